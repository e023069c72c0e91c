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
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

HIDDEN = "***"
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


def _mask_value(kind: str | None, value: Any, depth: int) -> Any:
    if kind is None:
        return mask(value, depth + 1)
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
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_KEYS:
                out[TRUNCATED] = f"{len(value) - MAX_KEYS} more keys"
                break
            out[str(key)[:MAX_STRING]] = _mask_value(field_kind(str(key)), item, depth)
        return out
    if kind is list:
        kept = [mask(item, depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"{TRUNCATED} {len(value) - MAX_ITEMS} more items")
        return kept
    return value


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Request headers worth keeping (the key id, time and nonce), the signature hidden."""
    return {
        name: (HIDDEN if field_kind(name) == "secret" else value[:MAX_STRING])
        for name, value in headers.items()
    }
