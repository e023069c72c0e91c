"""What both channels' notifications share before they become a ``ChannelEvent``: the refusal
(two kinds, so the gateway can answer alike whatever went wrong), strict JSON, bounded fields.
No I/O.

Everything here runs on bytes an unauthenticated caller chose, so each reader bounds what it
reads (count of keys, length of strings, size of integers) and refuses rather than repairs.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from fundhub.channels.events import ChannelEvent
from fundhub.common.clock import BANK_TZ


class RefusalKind(StrEnum):
    MALFORMED = "malformed"  # not a notification of the expected shape: 400
    UNVERIFIED = "unverified"  # not proven to come from the channel for one of our apps: 401


class NotificationRefused(Exception):
    """A notification we do not take; ``reason`` is for the log, never for the sender."""

    def __init__(self, kind: RefusalKind, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def malformed(reason: str) -> NotificationRefused:
    return NotificationRefused(RefusalKind.MALFORMED, reason)


def unverified(reason: str) -> NotificationRefused:
    return NotificationRefused(RefusalKind.UNVERIFIED, reason)


# Ids the channels hand out (out_trade_no, transaction ids, app ids): printable ASCII, no space.
_ID = re.compile(r"[\x21-\x7e]{1,64}")
_MAX_FEN = 10**15  # far above any real order; keeps every amount a bounded integer


def channel_event(**fields: Any) -> ChannelEvent:
    """The event, or the refusal of a value its model does not take (never a 500)."""
    try:
        return ChannelEvent(**fields)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            raise malformed("event: invalid") from None
        where = ".".join(str(p) for p in errors[0]["loc"]) or "event"
        raise malformed(f"{where}: {errors[0]['msg']}") from None


class _Duplicate(ValueError):
    pass


def _object_hook(max_keys: int) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(pairs) > max_keys:
            raise _Duplicate(f"an object of more than {max_keys} keys")
        result = dict(pairs)
        if len(result) != len(pairs):
            raise _Duplicate("a key given twice")
        return result

    return hook


@functools.cache
def _decoder(max_keys: int) -> json.JSONDecoder:
    # One decoder per bound, made once: ``json.loads`` with a hook builds a new one per call,
    # which cost the gateway as much as the parsing itself.
    return json.JSONDecoder(object_pairs_hook=_object_hook(max_keys))


def strict_object(raw: bytes | str, what: str, max_keys: int = 48) -> dict[str, Any]:
    """A JSON object with no key twice and no object of more than ``max_keys`` keys.

    The standard library rather than orjson: its hook sees every object's pairs, so a key
    given twice (which two parsers could read differently) is refused, not silently merged."""
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        value = _decoder(max_keys).decode(text)
    except _Duplicate as exc:
        raise malformed(f"{what}: {exc}") from None
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, absurd nesting
        raise malformed(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise malformed(f"{what}: not a JSON object")
    return value


def text(source: Mapping[str, Any], name: str, max_len: int = 64, required: bool = True) -> str:
    """A string field of at most ``max_len`` characters, without NUL (nothing downstream can
    store one); "" when absent and not required."""
    value = source.get(name)
    if value is None or value == "":
        if required:
            raise malformed(f"missing {name}")
        return ""
    if not isinstance(value, str):
        raise malformed(f"{name}: not a string")
    if len(value) > max_len or "\x00" in value:
        raise malformed(f"{name}: longer than {max_len} characters or not text")
    return value


def ident(source: Mapping[str, Any], name: str, required: bool = True) -> str:
    """An identifier: 1 to 64 printable ASCII characters."""
    value = text(source, name, 64, required)
    if value and not _ID.fullmatch(value):
        raise malformed(f"{name}: not an identifier")
    return value


def fen(source: Mapping[str, Any], name: str) -> int:
    """A JSON integer amount of fen (``true`` is not one, nor 1.0)."""
    value = source.get(name)
    if type(value) is not int or not 0 <= value < _MAX_FEN:
        raise malformed(f"{name}: not an amount in fen")
    return value


def obj(source: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = source.get(name)
    if not isinstance(value, dict):
        raise malformed(f"{name}: not an object")
    return value


def rfc3339(source: Mapping[str, Any], name: str) -> datetime:
    """WeChat Pay's times: ``2018-06-08T10:34:56+08:00``, the offset required."""
    value = text(source, name, 40)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise malformed(f"{name}: not an RFC 3339 time") from None
    if moment.tzinfo is None or "T" not in value:
        raise malformed(f"{name}: not an RFC 3339 time with its offset")
    return moment


_CHINA_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{3}))?"
)


def china_time(source: Mapping[str, Any], name: str, required: bool = True) -> datetime | None:
    """Alipay's times: ``yyyy-MM-dd HH:mm:ss`` (``gmt_refund`` adds ``.SSS``), Beijing time."""
    value = text(source, name, 23, required)
    if not value:
        return None
    match = _CHINA_TIME.fullmatch(value)
    if match is None:
        raise malformed(f"{name}: not yyyy-MM-dd HH:mm:ss")
    year, month, day, hour, minute, second = map(int, match.groups()[:6])
    millis = int(match.group(7) or 0)
    try:
        return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=BANK_TZ)
    except ValueError:
        raise malformed(f"{name}: not a date") from None
