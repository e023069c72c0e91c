"""Request bodies read strictly: bounded JSON, refusals that name the field. Pure, no I/O.

Every ``POST /v1/...`` body is parsed by hand from the raw bytes (they are what the caller
signed), then validated by a pydantic model of its own. What the two steps share lives here:

- the JSON itself: UTF-8 only, no duplicate key (two values for one key would make "the same
  body" ambiguous, and the idempotency checks compare bodies), no object of more keys or nesting
  deeper than the route needs (checked while parsing, before anything walks or validates it), no
  NaN or Infinity, no NUL or lone surrogate in any string (PostgreSQL cannot store them);
- the first validation error as ``"<field>: <message>"``, the wire ``msg`` of an E001;
- the canonical JSON a fingerprint is taken over (sorted keys, no whitespace, UTF-8);
- ``StrictBody``, the base of those models: the client's camelCase names, nothing unknown.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

MAX_OBJECT_KEYS = 256
MAX_DEPTH = 8
_FIELD_NAME_SHOWN = 64  # unknown keys are echoed back; keep that short


class InvalidBody(ValueError):
    """A refused body. ``str(exc)`` is the wire ``msg``: ``"<field>: <message>"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StrictBody(BaseModel):
    """A request body's model: camelCase on the wire (snake_case names accepted too), no key
    it does not know, no coercion (an amount is a JSON integer, not "100"), frozen."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )

    def normalised(self) -> dict[str, Any]:
        """The body as wire JSON values; absent and null optional fields are both left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def canonical_json(self) -> bytes:
        """The normalised body as canonical JSON: the form the fingerprint is taken over."""
        return canonical_json(self.normalised())

    def fingerprint(self) -> str:
        """SHA-256 hex of the canonical JSON: equal exactly when two bodies mean the same (the
        idempotency checks compare requests by it)."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


def parse_object(
    raw: bytes, max_keys: int = MAX_OBJECT_KEYS, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """The body as a JSON object, read strictly (see the module); raises InvalidBody."""
    document = _decode(raw, max_keys)
    if not isinstance(document, dict):
        raise InvalidBody("body", "not a JSON object")
    _check_strings(document, "", 0, max_depth)
    return document


def first_error(
    exc: ValidationError, messages: Mapping[str, str], opaque: Collection[str] = ()
) -> InvalidBody:
    """The first of pydantic's errors as a refusal naming its field.

    ``messages`` gives each field's wire message (what a valid value looks like); a field not
    in it reads "invalid". Fields in ``opaque`` hold the caller's own keys (an extension): an
    error inside one names the field only.
    """
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in error["loc"]]
    kind = error["type"]
    if loc and loc[0] in opaque:
        loc = loc[:1]
    field = ".".join(shown(part) for part in loc) or "body"
    if kind == "missing":
        return InvalidBody(field, "required")
    if kind == "extra_forbidden":
        return InvalidBody(field, "not allowed")
    return InvalidBody(field, messages.get(field, "invalid"))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal exactly when two documents mean the same."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def shown(name: str) -> str:
    """A client-chosen name as it may appear in a message: printable and short."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in name)
    if len(printable) > _FIELD_NAME_SHOWN:
        return printable[:_FIELD_NAME_SHOWN] + "…"
    return printable


def has_control(value: str) -> bool:
    """C0 and C1 control characters (tabs and newlines included): never in a name or an id."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value)


# --- parsing internals -----------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _TooManyKeys(ValueError):
    pass


def _object_hook(max_keys: int) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(pairs) > max_keys:
            raise _TooManyKeys
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKey(key)
            result[key] = value
        return result

    return no_duplicates


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _decode(raw: bytes, max_keys: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBody("body", "not UTF-8") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_hook(max_keys),
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
    except _DuplicateKey as exc:
        raise InvalidBody("body", f"duplicate key {shown(exc.key)}") from None
    except _TooManyKeys:
        raise InvalidBody("body", f"an object of more than {max_keys} keys") from None
    except (ValueError, RecursionError):
        raise InvalidBody("body", "not valid JSON") from None


def _check_strings(value: Any, path: str, depth: int, max_depth: int) -> None:
    """Refuse what PostgreSQL cannot store: NUL and lone surrogates (JSON escapes allow both),
    and nesting deeper than ``max_depth``."""
    if depth > max_depth:
        raise InvalidBody(path or "body", f"nested deeper than {max_depth} levels")
    if isinstance(value, str):
        if "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise InvalidBody(path or "body", "contains NUL or invalid Unicode")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{shown(key)}" if path else shown(key)
            _check_strings(key, here, depth, max_depth)
            _check_strings(item, here, depth + 1, max_depth)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, path, depth + 1, max_depth)
