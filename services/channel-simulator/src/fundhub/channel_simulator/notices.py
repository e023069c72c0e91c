"""The channels' notifications as they go on the wire, signed (and, for WeChat Pay, encrypted):
the simulator sends them, tests and benchmarks build them. Pure apart from the randomness of
nonces and ids.

WeChat Pay: a JSON envelope (``id``, ``create_time``, ``event_type``, ``resource`` encrypted
with the merchant's APIv3 key) and the ``Wechatpay-*`` headers signed with the platform key.
Alipay: a form of ``trade_status_sync`` parameters signed with Alipay's key. A retry of either
is signed anew (a fresh timestamp) and keeps its id (``id`` / ``notify_id``).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from fundhub.channels import alipay, wechatpay
from fundhub.common.clock import BANK_TZ, format_bank_time
from fundhub.common.money import format_yuan

_ALNUM = string.ascii_letters + string.digits


def nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def rfc3339(moment: datetime) -> str:
    """WeChat Pay's times: Beijing time with its offset, to the second."""
    return moment.astimezone(BANK_TZ).isoformat(timespec="seconds")


# --- WeChat Pay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WechatPayNotice:
    headers: dict[str, str]
    body: bytes


def transaction_resource(
    *,
    appid: str,
    mchid: str,
    out_trade_no: str,
    transaction_id: str,
    total_fen: int,
    success_time: datetime,
    openid: str = "oSimulatedPayer0000000000000",
    trade_type: str = "NATIVE",
) -> dict[str, Any]:
    """A paid transaction, as TRANSACTION.SUCCESS carries it (decrypted)."""
    return {
        "appid": appid,
        "mchid": mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id,
        "trade_type": trade_type,
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": rfc3339(success_time),
        "payer": {"openid": openid},
        "amount": {
            "total": total_fen,
            "payer_total": total_fen,
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }


def refund_resource(
    *,
    mchid: str,
    out_trade_no: str,
    transaction_id: str,
    out_refund_no: str,
    refund_id: str,
    refund_status: str,
    total_fen: int,
    refund_fen: int,
    success_time: datetime | None,
) -> dict[str, Any]:
    """A refund's outcome, as REFUND.SUCCESS / ABNORMAL / CLOSED carry it (decrypted)."""
    resource: dict[str, Any] = {
        "mchid": mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id,
        "out_refund_no": out_refund_no,
        "refund_id": refund_id,
        "refund_status": refund_status,
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": total_fen,
            "refund": refund_fen,
            "payer_total": total_fen,
            "payer_refund": refund_fen,
        },
    }
    if success_time is not None:
        resource["success_time"] = rfc3339(success_time)
    return resource


def wechatpay_body(
    notification_id: str,
    event_type: str,
    resource: Mapping[str, Any],
    apiv3_key: bytes,
    created: datetime,
) -> bytes:
    """The envelope with the resource encrypted under ``apiv3_key``."""
    original_type = "transaction" if event_type.startswith("TRANSACTION") else "refund"
    summary = "支付成功" if original_type == "transaction" else "退款状态变更"
    sealed = wechatpay.encrypt_resource(
        orjson.dumps(dict(resource)), apiv3_key, nonce(12), original_type, original_type
    )
    return orjson.dumps(
        {
            "id": notification_id,
            "create_time": rfc3339(created),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": sealed,
        }
    )


def sign_wechatpay(
    body: bytes, platform_key: RSAPrivateKey, serial: str, now: datetime
) -> WechatPayNotice:
    """Signed at sending time: each delivery (a retry too) carries its own timestamp."""
    signed = wechatpay.sign(body, platform_key, serial, str(int(now.timestamp())), nonce())
    return WechatPayNotice({**signed.as_headers(), "Content-Type": "application/json"}, body)


def notification_id() -> str:
    return "EV-" + "".join(secrets.choice(string.digits) for _ in range(24))


# --- Alipay --------------------------------------------------------------------------------------


def alipay_fields(
    *,
    app_id: str,
    seller_id: str,
    out_trade_no: str,
    trade_no: str,
    trade_status: str,
    total_fen: int,
    subject: str,
    gmt_create: datetime,
    gmt_payment: datetime | None = None,
    gmt_close: datetime | None = None,
    refund: tuple[str, int, datetime] | None = None,
    notify_id: str | None = None,
) -> dict[str, str]:
    """A ``trade_status_sync`` notice, unsigned. ``refund``: (out_biz_no, refunded in all so
    far in fen, when) for a refund's notice."""
    fields = {
        "notify_type": "trade_status_sync",
        "notify_id": notify_id or alipay_notify_id(),
        "app_id": app_id,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": alipay.SIGN_TYPE,
        "trade_no": trade_no,
        "out_trade_no": out_trade_no,
        "buyer_id": "2088102100000000",
        "buyer_logon_id": "159****0000",
        "seller_id": seller_id,
        "seller_email": "sim***@example.com",
        "trade_status": trade_status,
        "total_amount": format_yuan(total_fen),
        "receipt_amount": format_yuan(total_fen),
        "invoice_amount": format_yuan(total_fen),
        "buyer_pay_amount": format_yuan(total_fen),
        "point_amount": "0.00",
        "subject": subject,
        "gmt_create": format_bank_time(gmt_create),
    }
    if gmt_payment is not None:
        fields["gmt_payment"] = format_bank_time(gmt_payment)
        fields["fund_bill_list"] = orjson.dumps(
            [{"amount": format_yuan(total_fen), "fundChannel": "ALIPAYACCOUNT"}]
        ).decode()
    if gmt_close is not None:
        fields["gmt_close"] = format_bank_time(gmt_close)
    if refund is not None:
        out_biz_no, refunded_fen, when = refund
        fields["out_biz_no"] = out_biz_no
        fields["refund_fee"] = format_yuan(refunded_fen)
        fields["gmt_refund"] = format_bank_time(when) + f".{when.microsecond // 1000:03d}"
    return fields


def alipay_notify_id() -> str:
    return secrets.token_hex(17)


def sign_alipay(fields: Mapping[str, str], alipay_key: RSAPrivateKey, now: datetime) -> bytes:
    """The form as posted, ``notify_time`` set to now and ``sign`` over the rest."""
    params = {**fields, "notify_time": format_bank_time(now)}
    params["sign"] = alipay.sign_notification(params, alipay_key)
    return urlencode(params).encode("ascii")
