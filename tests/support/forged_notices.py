"""Channel notifications about a real order, as the channel simulator would send them, with one
thing changed (a tampered field, another key, another app, an old timestamp): what an attacker
or a misconfigured peer sends. Built with the simulator's own keys (``--keys-dir``, TEST keys
made per run) and the channel apps' keys a test registered (``support.channels``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from fundhub.channel_simulator import notices
from fundhub.channel_simulator.keys import ALIPAY_KEY_FILE, PLATFORM_KEY_FILE, PLATFORM_SERIAL_FILE
from fundhub.common.clock import utcnow
from fundhub.common.money import format_yuan
from fundhub.common.signing import generate_rsa_keypair, load_private_key
from support.channels import MerchantKeys

Forged = tuple[dict[str, str], bytes]  # headers, body
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class Forger:
    merchant: MerchantKeys
    platform_key: RSAPrivateKey
    platform_serial: str
    alipay_key: RSAPrivateKey

    @classmethod
    def of(cls, keys_dir: Path, merchant: MerchantKeys) -> Forger:
        return cls(
            merchant,
            load_private_key((keys_dir / PLATFORM_KEY_FILE).read_text()),
            (keys_dir / PLATFORM_SERIAL_FILE).read_text().strip(),
            load_private_key((keys_dir / ALIPAY_KEY_FILE).read_text()),
        )

    def wechatpay_paid(self, out_trade_no: str, total_fen: int, **change: Any) -> Forged:
        """TRANSACTION.SUCCESS for the order, with ``change``: resource fields (``appid``,
        ``mchid``), ``apiv3_key``, ``key`` (the platform key), ``serial``, ``at`` (when signed)."""
        m = self.merchant
        resource = notices.transaction_resource(
            appid=change.pop("appid", m.appid),
            mchid=change.pop("mchid", m.mchid),
            out_trade_no=out_trade_no,
            transaction_id="4200000000000000000000007777",
            total_fen=total_fen,
            success_time=utcnow(),
        )
        body = notices.wechatpay_body(
            notices.notification_id(),
            "TRANSACTION.SUCCESS",
            resource,
            change.pop("apiv3_key", m.apiv3_key.encode()),
            utcnow(),
        )
        notice = notices.sign_wechatpay(
            body,
            change.pop("key", self.platform_key),
            change.pop("serial", self.platform_serial),
            change.pop("at", utcnow()),
        )
        assert not change, change
        return notice.headers, notice.body

    def wechatpay_tampered(self, out_trade_no: str, total_fen: int) -> Forged:
        """Signed, then the body changed."""
        headers, body = self.wechatpay_paid(out_trade_no, total_fen)
        document = orjson.loads(body)
        document["id"] = "EV-TAMPERED"
        return headers, orjson.dumps(document)

    def wechatpay_bad_signature(self, out_trade_no: str, total_fen: int) -> Forged:
        headers, body = self.wechatpay_paid(out_trade_no, total_fen)
        raw = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
        raw[0] ^= 0xFF
        return {**headers, "Wechatpay-Signature": base64.b64encode(raw).decode()}, body

    def wechatpay_unknown_serial(self, out_trade_no: str, total_fen: int) -> Forged:
        """Signed by a key we were never given, under a serial we do not know."""
        other = load_private_key(generate_rsa_keypair()[0])
        return self.wechatpay_paid(out_trade_no, total_fen, key=other, serial="5157F09EFDC096DE")

    def wechatpay_old(self, out_trade_no: str, total_fen: int) -> Forged:
        return self.wechatpay_paid(out_trade_no, total_fen, at=utcnow() - timedelta(minutes=6))

    def alipay_paid(self, out_trade_no: str, total_fen: int, **change: str) -> Forged:
        m = self.merchant
        fields = notices.alipay_fields(
            app_id=m.alipay_app_id,
            seller_id=m.seller_id,
            out_trade_no=out_trade_no,
            trade_no="2026000000000000000000007777",
            trade_status="TRADE_SUCCESS",
            total_fen=total_fen,
            subject="x",
            gmt_create=utcnow(),
            gmt_payment=utcnow(),
        )
        fields.update(change)
        return FORM, notices.sign_alipay(fields, self.alipay_key, utcnow())

    def alipay_tampered(self, out_trade_no: str, total_fen: int) -> Forged:
        """Signed, then a parameter changed (the amount, to a cent less)."""
        _, body = self.alipay_paid(out_trade_no, total_fen)
        params = dict(parse_qsl(body.decode()))
        params["total_amount"] = format_yuan(total_fen - 1)
        return FORM, urlencode(params).encode()

    def alipay_other_app(self, out_trade_no: str, total_fen: int) -> Forged:
        """Genuinely signed by Alipay, for another seller of the same app id's key."""
        return self.alipay_paid(out_trade_no, total_fen, seller_id="2088999999999999")
