"""What an audit entry may keep of a request's parameters: the shape, never a secret or a
person's data.

Secrets (signatures, keys, passwords) are replaced whole; account, card, ID, licence and phone
numbers keep their last four characters (enough to tell two apart when investigating, not
enough to use); names keep their first character; e-mail addresses their first character and
their domain. ``biz_content`` and other JSON held in strings (the
bank's protocol nests JSON that way) are opened and masked too. Matching is by field name, in
any spelling (``payee_acct_no``, ``accountNo``), so a new field with a familiar name is masked
without a change here; large documents are cut short, so an entry stays small whatever a caller
sends.

An object is masked by its *plan*: for each of its keys, in order, the kept key and the field's
kind. Every request of a route sends objects of the same few shapes (a notification's nine
parameters, its ``biz_content``, a payout, its payee), so plans are kept per shape (the tuple of
keys) and a request pays the per-key decisions once per shape, not once per key; plain leaves
(short strings that hold no JSON, small-depth integers) are copied without a call. A plan is
only a faster way to the same result: ``mask_generic`` is the walk it replaces, and the unit
tests hold the two equal on any input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

HIDDEN = "***"
Masker = Callable[[Any, int], Any]
MAX_KEYS = 64  # per object; what follows is counted, not kept
MAX_ITEMS = 32  # per list
MAX_DEPTH = 6
MAX_STRING = 256
TRUNCATED = "…"

# Field names are compared in one spelling: lower case, without separators.
_SECRET_WORDS = ("sign", "signature", "secret", "password", "passwd", "token", "privatekey")
_SECRET_EXACT = frozenset({"key", "masterkey", "apikeysecret", "authorization"})
_NUMBER_WORDS = (
    "acctno",
    "accountno",
    "accountnumber",
    "cardno",
    "idno",
    "idnumber",
    "idcard",
    "licenceno",
    "licenseno",
    "licencenumber",
    "licensenumber",
    "creditcode",
    "certno",
    "phone",
    "mobile",
    "tel",
    "iban",
    "logonid",  # Alipay's buyer_logon_id: the payer's phone number or e-mail
)
_NAME_WORDS = (
    "acctname",
    "accountname",
    "payeename",
    "payername",
    "holdername",
    "realname",
    "username",
    "fullname",
    "personname",
)
_NAME_EXACT = frozenset({"name"})
_EMAIL_WORDS = ("email",)
_NOT_SECRET = frozenset({"signtype"})  # the algorithm's name, not a signature


def _folded(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


@lru_cache(maxsize=4096)
def field_kind(key: str) -> str | None:
    """``secret``, ``number``, ``name``, ``email`` or None (kept as it is), by the field's name.

    Cached: the same few dozen names come with every request, and this runs on the hot routes
    (uncached it was most of the audit's cost per request)."""
    name = _folded(key)
    if name in _NOT_SECRET:
        return None
    if name in _SECRET_EXACT or any(word in name for word in _SECRET_WORDS):
        return "secret"
    if any(word in name for word in _NUMBER_WORDS):
        return "number"
    if name in _NAME_EXACT or any(word in name for word in _NAME_WORDS):
        return "name"
    if any(word in name for word in _EMAIL_WORDS):
        return "email"
    return None


def mask_number(value: str) -> str:
    """``****6548``: the last four characters, or nothing of a value that short."""
    return "****" + value[-4:] if len(value) > 6 else HIDDEN


def mask_name(value: str) -> str:
    return value[:1] + "**" if value else value


def mask_email(value: str) -> str:
    """``o***@acme.example``: the first character and the domain, or nothing of a non-address."""
    local, at, domain = value.rpartition("@")
    return f"{local[:1]}***@{domain}" if at and local else HIDDEN


def _mask_value(kind: str | None, value: Any, depth: int, inner: Masker | None = None) -> Any:
    if kind is None:
        return (inner or mask)(value, depth + 1)
    if kind == "secret":
        return HIDDEN
    if not isinstance(value, str | int):
        return HIDDEN  # a number or name given as an object: nothing of it is kept
    text = str(value)
    if kind == "number":
        return mask_number(text)
    return mask_email(text) if kind == "email" else mask_name(text)


_OPENERS = ("{", "[")


def _nested_json(text: str) -> Any:
    """The JSON a string holds (``biz_content``), or None when it holds none."""
    if len(text) < 2 or text[0] not in "{[":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


# Plans of object shapes seen, by their tuple of keys. Bounded: shapes of at most
# ``PLAN_MAX_KEYS`` keys of at most ``PLAN_MAX_KEY_LENGTH`` characters, at most ``PLAN_CACHE``
# of them (then the cache starts again), so that a caller sending ever new shapes costs memory
# no more than a few hundred KiB and time no more than the walk without plans.
PLAN_CACHE = 512
PLAN_MAX_KEYS = 32
PLAN_MAX_KEY_LENGTH = 64
Plan = tuple[tuple[str, str | None], ...]
_plans: dict[tuple[str, ...], Plan] = {}


def _plan_of(keys: tuple[Any, ...]) -> Plan | None:
    """The plan of an object with these keys, or None for a shape not worth keeping."""
    plan = _plans.get(keys)
    if plan is not None:
        return plan
    if len(keys) > PLAN_MAX_KEYS:
        return None
    for key in keys:
        if type(key) is not str or len(key) > PLAN_MAX_KEY_LENGTH:
            return None
    plan = tuple((key, field_kind(key)) for key in keys)
    if len(_plans) >= PLAN_CACHE:
        _plans.clear()
    _plans[keys] = plan
    return plan


def mask(value: Any, depth: int = 0) -> Any:
    """``value`` with secrets and personal data masked, cut to a bounded size."""
    kind = type(value)
    if kind is str:  # the common leaf first: this runs for every value of every request
        if value[:1] in _OPENERS:
            nested = _nested_json(value)
            if nested is not None:
                return mask(nested, depth + 1)
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + TRUNCATED
    if depth > MAX_DEPTH:
        return TRUNCATED
    if kind is dict:
        plan = _plan_of(tuple(value)) if len(value) <= PLAN_MAX_KEYS else None
        if plan is None:
            return _mask_object(value, depth)
        deeper = depth + 1
        out: dict[str, Any] = {}
        for item, (key, field) in zip(value.values(), plan, strict=True):
            if field is None:
                item_type = type(item)
                if item_type is str:
                    if len(item) <= MAX_STRING and item[:1] not in _OPENERS:
                        out[key] = item
                        continue
                elif item_type is int and deeper <= MAX_DEPTH:
                    out[key] = item
                    continue
                out[key] = mask(item, deeper)
            elif field == "secret":
                out[key] = HIDDEN
            else:
                out[key] = _mask_value(field, item, depth)
        return out
    if kind is list:
        return _mask_list(value, depth)
    return value


def mask_generic(value: Any, depth: int = 0) -> Any:
    """What ``mask`` returns, by walking every key without plans: the reference it must equal."""
    kind = type(value)
    if kind is str:
        if value[:1] in _OPENERS:
            nested = _nested_json(value)
            if nested is not None:
                return mask_generic(nested, depth + 1)
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + TRUNCATED
    if depth > MAX_DEPTH:
        return TRUNCATED
    if kind is dict:
        return _mask_object(value, depth, mask_generic)
    if kind is list:
        return _mask_list(value, depth, mask_generic)
    return value


def _mask_object(value: dict[Any, Any], depth: int, inner: Masker = mask) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index >= MAX_KEYS:
            out[TRUNCATED] = f"{len(value) - MAX_KEYS} more keys"
            break
        out[str(key)[:MAX_STRING]] = _mask_value(field_kind(str(key)), item, depth, inner)
    return out


def _mask_list(value: list[Any], depth: int, inner: Masker = mask) -> list[Any]:
    kept = [inner(item, depth + 1) for item in value[:MAX_ITEMS]]
    if len(value) > MAX_ITEMS:
        kept.append(f"{TRUNCATED} {len(value) - MAX_ITEMS} more items")
    return kept


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Request headers worth keeping (the key id, time and nonce), the signature hidden."""
    return {
        name: (HIDDEN if field_kind(name) == "secret" else value[:MAX_STRING])
        for name, value in headers.items()
    }
