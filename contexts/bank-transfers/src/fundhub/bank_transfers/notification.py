"""The bank's transfer notification (bkfunds.acct.transfer.notify), validated against its tables.

The field tables of ``seeds/bank-transfer-notify.txt`` are the contract: every rule below names
the table row it enforces. Pure: text in, a typed notice or a ``NotifyRejected`` out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from fundhub.common.clock import parse_bank_time
from fundhub.common.envelope import deterministic_id
from fundhub.common.money import MoneyError, normalize_currency, parse_minor_units

TRANSFER_NOTIFY_METHOD = "bkfunds.acct.transfer.notify"


class NotifyRejected(Exception):
    """A notification we refuse; ``reason`` is short, names the field, and is sent back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- public parameters (公共请求参数) --------------------------------------------------------

# name -> (max length in characters or None for unlimited, required)
PUBLIC_PARAM_SPEC: Mapping[str, tuple[int | None, bool]] = {
    "app_id": (32, True),
    "method": (32, True),
    "format": (16, True),
    "charset": (16, True),
    "sign_type": (8, True),
    # The table says string(16), but its own example and format (yyyy-MM-dd HH:mm:ss) are 19
    # characters long; the format wins, or no conforming notification could pass.
    "timestamp": (19, True),
    "version": (8, True),
    "app_auth_token": (128, False),
    # The table says string(256), but a base64 RSA-2048 signature is 344 characters (and a
    # 4096-bit one 684); accept up to 1024 so a real RSA2 signature is never refused for length.
    "sign": (1024, True),
    "biz_content": (None, True),
}

_BANK_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
_BANK_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME_SHAPE = "expected yyyy-MM-dd HH:mm:ss"


# The seed's public parameters are 11; a notification with more top-level keys than this is
# refused before anything else reads it (the string to sign would join every one of them).
MAX_PARAMS = 32
# Any object inside biz_content: a transfer has about 30 fields, a batch item 6.
MAX_OBJECT_KEYS = 256


class _BadObject(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _strict_object(max_keys: int) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An ``object_pairs_hook`` that refuses duplicate keys (with "last one wins" the bank and
    we could read one signed text two ways) and objects of more than ``max_keys`` keys."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(pairs) > max_keys:
            raise _BadObject(f"more than {max_keys} keys in an object")
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise _BadObject(f"duplicate key {key[:64]!r}")
                seen.add(key)
        return result

    return hook


_PARAMS_HOOK = _strict_object(MAX_PARAMS)
_BIZ_HOOK = _strict_object(MAX_OBJECT_KEYS)


def load_params(raw: bytes) -> dict[str, Any]:
    """The notification's top-level parameters, bounded before any other work: at most
    ``MAX_PARAMS`` keys, none twice, a JSON object. Parameters with an empty value (null or
    "") are dropped: they are outside the signature, so nothing vouches for them and they are
    not stored."""
    try:
        params = json.loads(raw, object_pairs_hook=_PARAMS_HOOK)
    except _BadObject as exc:
        raise NotifyRejected(f"body: {exc.reason}") from None
    except (ValueError, RecursionError):
        raise NotifyRejected("malformed JSON") from None
    if not isinstance(params, dict):
        raise NotifyRejected("body is not a JSON object")
    return {k: v for k, v in params.items() if v is not None and v != ""}


def strict_loads(text: str, field: str) -> Any:
    """JSON inside a signed parameter (``biz_content``, ``store_list``): no duplicate keys, no
    object of more than ``MAX_OBJECT_KEYS`` keys. The standard library, not orjson: it reports
    duplicates through the hook and reads a lone surrogate escape, which gets its own refusal."""
    try:
        return json.loads(text, object_pairs_hook=_BIZ_HOOK)
    except _BadObject as exc:
        raise NotifyRejected(f"{field}: {exc.reason}") from None


def _loads(text: str) -> Any:
    return strict_loads(text, "biz_content")


def _storable(value: str) -> bool:
    """Postgres text and jsonb cannot hold NUL, and UTF-8 cannot hold a lone surrogate.

    Refused at the edge: accepted, such a value would fail every attempt to store it.
    """
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_public_params(params: Mapping[str, Any]) -> None:
    """Presence, type and length of the public parameters; extra keys pass (they are signed)."""
    for name, (max_len, required) in PUBLIC_PARAM_SPEC.items():
        value = params.get(name)
        if value is None or value == "":
            if required:
                raise NotifyRejected(f"missing parameter {name}")
            continue
        if not isinstance(value, str):
            raise NotifyRejected(f"{name}: not a string")
        if max_len is not None and len(value) > max_len:
            raise NotifyRejected(f"{name}: longer than {max_len} characters")
    for name, value in params.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, str)):
            raise NotifyRejected(f"{name}: not a string")
        if not _storable(name) or (value is not None and not _storable(value)):
            raise NotifyRejected(f"{name[:64]!r}: contains NUL or invalid Unicode")


def check_protocol(params: Mapping[str, Any], now: datetime, tolerance_s: int) -> None:
    """The protocol values the bank promises, and its 10-minute clock window (``now`` aware).

    Call after ``check_public_params``. The method is the caller's to route.
    """
    if str(params.get("format", "")).lower() != "json":
        raise NotifyRejected("format: only json is supported")
    if str(params.get("charset", "")).lower() != "utf-8":
        raise NotifyRejected("charset: only UTF-8 is supported")
    if params.get("sign_type") != "RSA2":
        raise NotifyRejected("sign_type: only RSA2 is supported")
    if params.get("version") != "1.0":
        raise NotifyRejected("version: only 1.0 is supported")
    sent_at = _bank_time("timestamp", params.get("timestamp"))
    if abs((now - sent_at).total_seconds()) > tolerance_s:
        raise NotifyRejected("timestamp outside the allowed window")


def _bank_time(field: str, value: Any) -> datetime:
    if not isinstance(value, str) or not _BANK_TIME.fullmatch(value):
        raise NotifyRejected(f"{field}: {_TIME_SHAPE}")
    try:
        return parse_bank_time(value)
    except ValueError:
        raise NotifyRejected(f"{field}: {_TIME_SHAPE}") from None


# --- business parameters (业务请求参数) ------------------------------------------------------


@dataclass(frozen=True)
class StoreEntry:
    store_id: str
    store_name: str


@dataclass(frozen=True)
class TransferNotice:
    """One incoming-transfer notice, typed. Optional fields the bank left empty are None."""

    channel: str
    node_id: str
    record_id: str
    trans_time: datetime  # aware, GMT+8
    channel_trade_no: str
    merchant_name: str | None
    merchant_id: str | None
    cloud_merchant_id: str | None
    in_acct_name: str
    in_acct_bank_name: str | None
    in_acct_no: str
    trans_amount: int  # fen
    currency: str  # ISO 4217, from ccy_code
    ccy_code: str  # as sent
    fee: int | None
    post_fee: int | None
    bind_status: str
    deduct_status: str
    deduct_channel_trade_no: str | None
    out_acct_name: str
    out_acct_bank_name: str | None
    out_acct_no: str
    host_flow_no: str | None
    host_tx_date: date | None
    reverse_flag: str | None
    use_ex: str | None
    remark: str | None
    store_list: tuple[StoreEntry, ...] | None

    def to_record_fields(self) -> dict[str, Any]:
        """The notice's columns of ``bank_transfer_records`` (the caller adds app_id, state...)."""
        return {
            "record_id": self.record_id,
            "currency": self.currency,
            "trans_amount": self.trans_amount,
            "channel": self.channel,
            "node_id": self.node_id,
            "trans_time": self.trans_time,
            "channel_trade_no": self.channel_trade_no,
            "merchant_name": self.merchant_name,
            "merchant_id": self.merchant_id,
            "cloud_merchant_id": self.cloud_merchant_id,
            "in_acct_name": self.in_acct_name,
            "in_acct_bank_name": self.in_acct_bank_name,
            "in_acct_no": self.in_acct_no,
            "ccy_code": self.ccy_code,
            "fee": self.fee,
            "post_fee": self.post_fee,
            "bind_status": self.bind_status,
            "deduct_status": self.deduct_status,
            "deduct_channel_trade_no": self.deduct_channel_trade_no,
            "out_acct_name": self.out_acct_name,
            "out_acct_bank_name": self.out_acct_bank_name,
            "out_acct_no": self.out_acct_no,
            "host_flow_no": self.host_flow_no,
            "host_tx_date": self.host_tx_date,
            "reverse_flag": self.reverse_flag,
            "use_ex": self.use_ex,
            "remark": self.remark,
            "store_list": (
                None
                if self.store_list is None
                else [{"store_id": s.store_id, "store_name": s.store_name} for s in self.store_list]
            ),
        }


# name -> (max length in characters or None for unlimited, required), in the table's order.
_BIZ_SPEC: Mapping[str, tuple[int | None, bool]] = {
    "channel": (2, True),
    "node_id": (8, True),
    "record_id": (32, True),
    "trans_time": (19, True),
    "channel_trade_no": (64, True),
    "merchant_name": (255, False),
    "merchant_id": (32, False),
    "cloud_merchant_id": (64, False),
    "in_acct_name": (100, True),
    "in_acct_bank_name": (120, False),
    "in_acct_no": (32, True),
    "trans_amount": (16, True),
    "ccy_code": (5, True),
    "fee": (16, False),
    "post_fee": (16, False),
    "bind_status": (1, True),
    "deduct_status": (1, True),
    "deduct_channel_trade_no": (64, False),
    "out_acct_name": (100, True),
    "out_acct_bank_name": (120, False),
    "out_acct_no": (32, True),
    "host_flow_no": (32, True),
    "host_tx_date": (10, True),
    "reverse_flag": (1, False),
    "use_ex": (300, False),
    "remark": (100, False),
    "store_list": (None, False),
}

CHANNEL_PINGAN = "02"
CHANNEL_ICBC = "04"
_ENUMS: Mapping[str, frozenset[str]] = {
    "channel": frozenset({CHANNEL_PINGAN, CHANNEL_ICBC}),
    "bind_status": frozenset({"0", "1"}),
    "deduct_status": frozenset({"0", "1", "6"}),
    "reverse_flag": frozenset({"0", "1", "2"}),
    "ccy_code": frozenset({"RMB", "CNY"}),
}
# "银行渠道为工行时为空": for ICBC these required rows may be empty.
_EMPTY_FOR_ICBC = frozenset({"host_flow_no", "host_tx_date"})
_AMOUNTS = frozenset({"trans_amount", "fee", "post_fee"})


def parse_transfer_biz_content(text: str) -> TransferNotice:
    """Parse and validate ``biz_content``; unknown keys are ignored (the bank adds fields)."""
    try:
        obj = _loads(text)
    except (ValueError, TypeError, RecursionError):
        raise NotifyRejected("biz_content: not a JSON object") from None
    if not isinstance(obj, dict):
        raise NotifyRejected("biz_content: not a JSON object")

    values: dict[str, str | None] = {}
    for name, (max_len, required) in _BIZ_SPEC.items():
        if name in _EMPTY_FOR_ICBC and values.get("channel") == CHANNEL_ICBC:
            required = False
        values[name] = _biz_string(obj, name, max_len, required)

    def req(name: str) -> str:
        value = values[name]
        if value is None:  # unreachable: _biz_string refused a missing required field
            raise NotifyRejected(f"biz_content.{name}: missing")
        return value

    host_tx_date = values["host_tx_date"]
    return TransferNotice(
        channel=req("channel"),
        node_id=req("node_id"),
        record_id=req("record_id"),
        trans_time=_bank_time("biz_content.trans_time", req("trans_time")),
        channel_trade_no=req("channel_trade_no"),
        merchant_name=values["merchant_name"],
        merchant_id=values["merchant_id"],
        cloud_merchant_id=values["cloud_merchant_id"],
        in_acct_name=req("in_acct_name"),
        in_acct_bank_name=values["in_acct_bank_name"],
        in_acct_no=req("in_acct_no"),
        trans_amount=_amount("trans_amount", req("trans_amount")),
        currency=normalize_currency(req("ccy_code")),
        ccy_code=req("ccy_code"),
        fee=_optional_amount("fee", values["fee"]),
        post_fee=_optional_amount("post_fee", values["post_fee"]),
        bind_status=req("bind_status"),
        deduct_status=req("deduct_status"),
        deduct_channel_trade_no=values["deduct_channel_trade_no"],
        out_acct_name=req("out_acct_name"),
        out_acct_bank_name=values["out_acct_bank_name"],
        out_acct_no=req("out_acct_no"),
        host_flow_no=values["host_flow_no"],
        host_tx_date=None if host_tx_date is None else _bank_date(host_tx_date),
        reverse_flag=values["reverse_flag"],
        use_ex=values["use_ex"],
        remark=values["remark"],
        store_list=_store_list(values["store_list"]),
    )


def _biz_string(
    obj: Mapping[str, Any], name: str, max_len: int | None, required: bool
) -> str | None:
    """One row of the table: a string, present if required, within length and enumeration.

    JSON null and "" both mean absent: that is how the bank leaves an optional field empty.
    """
    field = f"biz_content.{name}"
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise NotifyRejected(f"{field}: missing")
        return None
    if not isinstance(value, str):
        raise NotifyRejected(f"{field}: not a string")
    if not _storable(value):
        raise NotifyRejected(f"{field}: contains NUL or invalid Unicode")
    if max_len is not None and len(value) > max_len:
        raise NotifyRejected(f"{field}: longer than {max_len} characters")
    allowed = _ENUMS.get(name)
    if allowed is not None and value not in allowed:
        raise NotifyRejected(f"{field}: not one of {', '.join(sorted(allowed))}")
    return value


def _amount(name: str, text: str) -> int:
    try:
        return parse_minor_units(text, max_digits=16)
    except MoneyError:
        raise NotifyRejected(f"biz_content.{name}: not a non-negative integer amount") from None


def _optional_amount(name: str, text: str | None) -> int | None:
    return None if text is None else _amount(name, text)


def _bank_date(text: str) -> date:
    if _BANK_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise NotifyRejected("biz_content.host_tx_date: expected yyyy-MM-dd")


def _store_list(text: str | None) -> tuple[StoreEntry, ...] | None:
    """``store_list`` is a string holding a JSON array of {store_id, store_name} objects."""
    if text is None:
        return None
    try:
        items = strict_loads(text, "biz_content.store_list")
    except (ValueError, RecursionError):
        items = None
    if not isinstance(items, list):
        raise NotifyRejected("biz_content.store_list: not a JSON array")
    stores: list[StoreEntry] = []
    for index, item in enumerate(items):
        prefix = f"biz_content.store_list[{index}]"
        if not isinstance(item, dict):
            raise NotifyRejected(f"{prefix}: not a JSON object")
        store_id = _store_field(item, prefix, "store_id", 50)
        store_name = _store_field(item, prefix, "store_name", 100)
        stores.append(StoreEntry(store_id=store_id, store_name=store_name))
    return tuple(stores)


def _store_field(item: Mapping[str, Any], prefix: str, name: str, max_len: int) -> str:
    value = item.get(name)
    if value is None or value == "":
        raise NotifyRejected(f"{prefix}.{name}: missing")
    if not isinstance(value, str):
        raise NotifyRejected(f"{prefix}.{name}: not a string")
    if not _storable(value):
        raise NotifyRejected(f"{prefix}.{name}: contains NUL or invalid Unicode")
    if len(value) > max_len:
        raise NotifyRejected(f"{prefix}.{name}: longer than {max_len} characters")
    return value


def notification_message_id(app_id: str, biz_content: str) -> str:
    """A content-derived id: the bank's retries of one notice (new timestamp and sign) dedupe.

    The biz JSON is canonicalised (sorted keys, no whitespace) so a re-serialisation by the
    bank does not defeat deduplication; text that is not JSON is used as it is.
    """
    try:
        canonical = orjson.dumps(orjson.loads(biz_content), option=orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        try:  # what orjson refuses (a lone surrogate, a huge integer), canonicalised as before
            canonical = json.dumps(
                json.loads(biz_content), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
        except (ValueError, RecursionError):
            canonical = biz_content
    return deterministic_id(app_id, canonical)
