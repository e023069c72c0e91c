"""The simulator's own keys (WeChat Pay's platform key and its serial, Alipay's key) and the
merchants it serves (their keys, which verify their requests; their APIv3 keys, which seal the
notifications' resources).

Its own keys come from files (``--keys-dir``: ``wechatpay-platform-private.pem``,
``wechatpay-platform-serial.txt``, ``alipay-private.pem``) or are generated at start; their
public halves are served at ``GET /sim/keys`` so a test or ``fundhub up`` can register the
simulator as a trusted channel app (``fundhub channel add``). Merchants are registered through
``PUT /sim/wechatpay/merchants/{mchid}`` and ``PUT /sim/alipay/apps/{app_id}``, or read at start
from ``merchants.json`` in the keys directory, of this shape::

    {"wechatpay": [{"mchid": "…", "appid": "…", "apiv3Key": "…32 characters…",
                    "merchantSerial": "…", "merchantPublicKey": "-----BEGIN PUBLIC KEY-----…"}],
     "alipay": [{"appId": "…", "sellerId": "2088…", "appPublicKey": "-----BEGIN PUBLIC KEY-----…"}]}

The APIv3 key is a secret shared by WeChat Pay and the merchant: in these files and requests it
is a simulator's, for tests and demos only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from pydantic import BaseModel, ConfigDict, Field

from fundhub.common.signing import generate_rsa_keypair, load_private_key, load_public_key

PLATFORM_KEY_FILE = "wechatpay-platform-private.pem"
PLATFORM_SERIAL_FILE = "wechatpay-platform-serial.txt"
ALIPAY_KEY_FILE = "alipay-private.pem"
MERCHANTS_FILE = "merchants.json"


def public_pem(key: RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def new_serial() -> str:
    """A platform certificate serial as WeChat Pay shows them: 40 upper-case hex digits."""
    return secrets.token_hex(20).upper()


@dataclass(frozen=True)
class OwnKeys:
    platform_key: RSAPrivateKey = field(repr=False)
    platform_serial: str
    alipay_key: RSAPrivateKey = field(repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "wechatpay": {
                "platformSerial": self.platform_serial,
                "platformPublicKey": public_pem(self.platform_key),
            },
            "alipay": {"alipayPublicKey": public_pem(self.alipay_key)},
        }


def own_keys(directory: Path | None) -> OwnKeys:
    """From ``directory`` where the files are, generated where they are not."""

    def private(name: str) -> RSAPrivateKey:
        path = directory / name if directory else None
        if path is not None and path.is_file():
            return load_private_key(path.read_text("ascii"))
        return load_private_key(generate_rsa_keypair()[0])

    serial_path = directory / PLATFORM_SERIAL_FILE if directory else None
    serial = (
        serial_path.read_text("ascii").strip()
        if serial_path is not None and serial_path.is_file()
        else new_serial()
    )
    return OwnKeys(private(PLATFORM_KEY_FILE), serial, private(ALIPAY_KEY_FILE))


class WechatPayMerchant(BaseModel):
    """A merchant as WeChat Pay knows it (``PUT /sim/wechatpay/merchants/{mchid}``)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    mchid: str = Field(min_length=1, max_length=32)
    appid: str = Field(min_length=1, max_length=32)
    apiv3_key: str = Field(alias="apiv3Key", min_length=32, max_length=32, repr=False)
    merchant_serial: str = Field(alias="merchantSerial", min_length=1, max_length=64)
    merchant_public_key: str = Field(alias="merchantPublicKey", max_length=4096)

    def public_key(self) -> RSAPublicKey:
        return load_public_key(self.merchant_public_key)


class AlipayApp(BaseModel):
    """An app as Alipay knows it (``PUT /sim/alipay/apps/{app_id}``)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    app_id: str = Field(alias="appId", min_length=1, max_length=32)
    seller_id: str = Field(alias="sellerId", min_length=1, max_length=32)
    app_public_key: str = Field(alias="appPublicKey", max_length=4096)

    def public_key(self) -> RSAPublicKey:
        return load_public_key(self.app_public_key)


class Merchants:
    """Who may call the simulated APIs, with the keys that verify them."""

    def __init__(self) -> None:
        self.wechatpay: dict[str, WechatPayMerchant] = {}
        self.alipay: dict[str, AlipayApp] = {}

    def add_wechatpay(self, merchant: WechatPayMerchant) -> None:
        merchant.public_key()  # refuse a key that does not load, now
        self.wechatpay[merchant.mchid] = merchant

    def add_alipay(self, app: AlipayApp) -> None:
        app.public_key()
        self.alipay[app.app_id] = app

    def load(self, path: Path) -> None:
        document = json.loads(path.read_text("utf-8"))
        for item in document.get("wechatpay", []):
            self.add_wechatpay(WechatPayMerchant.model_validate(item))
        for item in document.get("alipay", []):
            self.add_alipay(AlipayApp.model_validate(item))
