"""The bank's ``bkfunds.acct.transfer.notify`` notification: business fields, envelope, signature.

Pure apart from an optional clock read when no ``now`` is given. Field names, order and
formats follow the seed's tables (``seeds/bank-transfer-notify.txt``): every value on the wire
is a string, amounts are strings of fen, times are ``yyyy-MM-dd HH:mm:ss`` in GMT+8.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.signing import load_private_key, rsa2_sign

METHOD = "bkfunds.acct.transfer.notify"
DEFAULT_APP_ID = "20210911888888888888888888"
DEFAULT_EXCLUDES: tuple[str, ...] = ("sign",)

DeductStatus = Literal["0", "6", "1"]  # 0 not deducted, 6 deduction in progress, 1 deducted
ReverseFlag = Literal["0", "1", "2"]  # 0 unrelated, 1 this transfer was reversed, 2 is a reversal
Channel = Literal["02", "04"]  # 02 Ping An Bank, 04 ICBC
BindStatus = Literal["0", "1"]

PrivateKey = str | bytes | RSAPrivateKey

_DEDUCT_STATUSES = frozenset({"0", "6", "1"})
_REVERSE_FLAGS = frozenset({"0", "1", "2"})
_ICBC = "04"


@dataclass(frozen=True, slots=True)
class Store:
    """One entry of ``store_list``: a store bound to the receiving merchant."""

    store_id: str
    store_name: str


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """What one notification says about one incoming transfer (a 来账记录).

    Only the identity, the account, the amount and the two status flags usually vary; the
    rest defaults to plausible values. Numbers the bank assigns per record (its flow numbers)
    default to digits derived from ``record_id`` so that repeated and follow-up notices of one
    record agree with each other. ``trans_time`` None means "the notification's timestamp".
    """

    record_id: str
    in_acct_no: str
    trans_amount: int
    deduct_status: DeductStatus = "0"
    reverse_flag: ReverseFlag = "0"
    channel: Channel = "02"
    trans_time: datetime | None = None
    node_id: str = "00026713"
    channel_trade_no: str | None = None
    merchant_name: str | None = None
    merchant_id: str | None = None
    cloud_merchant_id: str | None = None
    in_acct_name: str = "模拟收款方账户"
    in_acct_bank_name: str | None = "平安银行"
    ccy_code: str = "RMB"
    fee: int | None = None
    post_fee: int | None = None
    bind_status: BindStatus = "1"
    deduct_channel_trade_no: str | None = None
    out_acct_name: str = "模拟付款方账户"
    out_acct_bank_name: str | None = "工商银行"
    out_acct_no: str = "624615616476846548"
    host_flow_no: str | None = None
    host_tx_date: str | None = None
    use_ex: str | None = None
    remark: str | None = None
    store_list: tuple[Store, ...] | None = None

    def __post_init__(self) -> None:
        if not self.record_id or len(self.record_id) > 32:
            raise ValueError("record_id must have 1 to 32 characters")
        if not self.in_acct_no or len(self.in_acct_no) > 32:
            raise ValueError("in_acct_no must have 1 to 32 characters")
        if isinstance(self.trans_amount, bool) or not isinstance(self.trans_amount, int):
            raise TypeError("trans_amount is an int of fen")
        if self.trans_amount <= 0:
            raise ValueError("trans_amount must be positive")
        if self.deduct_status not in _DEDUCT_STATUSES:
            raise ValueError(f"deduct_status {self.deduct_status!r} is not 0, 6 or 1")
        if self.reverse_flag not in _REVERSE_FLAGS:
            raise ValueError(f"reverse_flag {self.reverse_flag!r} is not 0, 1 or 2")
        for name in ("fee", "post_fee"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative int of fen")


def _bank_number(lead: str, record_id: str, width: int = 12) -> str:
    """A stable bank-style serial number for a record (same record, same number)."""
    digest = hashlib.sha256(f"{lead}:{record_id}".encode()).digest()
    number = int.from_bytes(digest[:8], "big") % 10 ** (width - 1)
    return lead + f"{number:0{width - 1}d}"


def _fen(value: int | None) -> str | None:
    return None if value is None else str(value)


def biz_fields(spec: TransferSpec, now: datetime | None = None) -> dict[str, str]:
    """The business parameters in the seed's order; optional fields left out when unset.

    The ICBC channel (04) has no fee, post fee, host flow number, host date or reversal flag:
    the required ones among them go out empty, the optional ones are left out.
    """
    trans_time = spec.trans_time or now or utcnow()
    trans_time_text = format_bank_time(trans_time)
    icbc = spec.channel == _ICBC
    deduct_trade_no = spec.deduct_channel_trade_no
    if deduct_trade_no is None and spec.deduct_status != "0":
        deduct_trade_no = _bank_number("2", spec.record_id)
    store_list = None
    if spec.store_list is not None:
        store_list = json.dumps(
            [{"store_id": s.store_id, "store_name": s.store_name} for s in spec.store_list],
            ensure_ascii=False,
            separators=(",", ":"),
        )
    fields: dict[str, str | None] = {
        "channel": spec.channel,
        "node_id": spec.node_id,
        "record_id": spec.record_id,
        "trans_time": trans_time_text,
        "channel_trade_no": spec.channel_trade_no or _bank_number("1", spec.record_id),
        "merchant_name": spec.merchant_name,
        "merchant_id": spec.merchant_id,
        "cloud_merchant_id": spec.cloud_merchant_id,
        "in_acct_name": spec.in_acct_name,
        "in_acct_bank_name": spec.in_acct_bank_name,
        "in_acct_no": spec.in_acct_no,
        "trans_amount": str(spec.trans_amount),
        "ccy_code": spec.ccy_code,
        "fee": None if icbc else _fen(spec.fee),
        "post_fee": None if icbc else _fen(spec.post_fee),
        "bind_status": spec.bind_status,
        "deduct_status": spec.deduct_status,
        "deduct_channel_trade_no": deduct_trade_no,
        "out_acct_name": spec.out_acct_name,
        "out_acct_bank_name": spec.out_acct_bank_name,
        "out_acct_no": spec.out_acct_no,
        "host_flow_no": "" if icbc else spec.host_flow_no or _bank_number("3", spec.record_id),
        "host_tx_date": "" if icbc else spec.host_tx_date or trans_time_text[:10],
        "reverse_flag": None if icbc else spec.reverse_flag,
        "use_ex": spec.use_ex,
        "remark": spec.remark,
        "store_list": store_list,
    }
    return {key: value for key, value in fields.items() if value is not None}


def biz_content(spec: TransferSpec, now: datetime | None = None) -> str:
    """``biz_content`` as the bank sends it: compact JSON text, non-ASCII kept as is."""
    return json.dumps(biz_fields(spec, now), ensure_ascii=False, separators=(",", ":"))


def private_key(key: PrivateKey) -> RSAPrivateKey:
    """The parsed key (parsed once per distinct PEM by ``load_private_key``)."""
    return load_private_key(key) if isinstance(key, str | bytes) else key


def sign_params(
    params: Mapping[str, str], key: PrivateKey, excludes: Collection[str] = DEFAULT_EXCLUDES
) -> str:
    return rsa2_sign(params, key, excludes)


def build_notification(
    spec: TransferSpec,
    app_id: str,
    private_key_pem: PrivateKey,
    now: datetime | None = None,
    excludes: Collection[str] = DEFAULT_EXCLUDES,
) -> dict[str, str]:
    """The full signed parameter dict, ready to POST as JSON."""
    moment = now or utcnow()
    params = {
        "app_id": app_id,
        "method": METHOD,
        "format": "json",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": format_bank_time(moment),
        "version": "1.0",
        "biz_content": biz_content(spec, moment),
    }
    params["sign"] = sign_params(params, private_key_pem, excludes)
    return params


def build_many(
    specs: Iterable[TransferSpec],
    app_id: str,
    private_key_pem: PrivateKey,
    now: datetime | None = None,
    excludes: Collection[str] = DEFAULT_EXCLUDES,
) -> list[dict[str, str]]:
    """Sign a batch ahead of sending (about 1 ms each), all stamped with one timestamp."""
    moment = now or utcnow()
    key = private_key(private_key_pem)
    return [build_notification(spec, app_id, key, moment, excludes) for spec in specs]


def resign(
    params: Mapping[str, str],
    private_key_pem: PrivateKey,
    now: datetime | None = None,
    excludes: Collection[str] = DEFAULT_EXCLUDES,
) -> dict[str, str]:
    """A copy with a fresh timestamp and signature; everything else, biz_content too, unchanged."""
    fresh = {key: value for key, value in params.items() if key != "sign"}
    fresh["timestamp"] = format_bank_time(now or utcnow())
    fresh["sign"] = sign_params(fresh, private_key_pem, excludes)
    return fresh
