"""The channel simulator as the dev stack's WeChat Pay and Alipay: its keys, the merchant's keys,
and both registered as trusted channel apps, in ``.data/dev`` (git-ignored), made on first use.

The simulator reads its directory (``--keys-dir``, see ``fundhub.channel_simulator.keys``): its
own private keys and platform serial, and ``merchants.json`` (the merchant's public keys and the
APIv3 key they share). fundhub gets the other halves through ``channels.apps``, as ``fundhub
channel add`` would register them. Production never reads these files.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fundhub.channels.apps import (
    normalize_public_key,
    upsert_alipay_app,
    upsert_wechatpay_app,
)
from fundhub.cli.devstack.devkeys import _secret_dir, _write_new
from fundhub.common.db import Connection
from fundhub.common.signing import generate_rsa_keypair, load_private_key

# The dev apps' ids (any ids would do: these name the simulator's merchant in the demos).
DEV_MCHID = "1900000109"
DEV_APPID = "wxd0000000simulator"
DEV_ALIPAY_APP_ID = "2021000000000109"
DEV_SELLER_ID = "2088000000000109"

CHANNEL_SIM_DIR = "channel-sim"
# The simulator's --keys-dir layout (fundhub.channel_simulator.keys).
_PLATFORM_KEY = "wechatpay-platform-private.pem"
_PLATFORM_SERIAL = "wechatpay-platform-serial.txt"
_ALIPAY_KEY = "alipay-private.pem"
_MERCHANTS = "merchants.json"
# The merchant's side.
_MERCHANT_KEY = "channel-wechatpay-merchant-private.pem"
_MERCHANT_SERIAL = "channel-wechatpay-merchant-serial.txt"
_APIV3_KEY = "channel-wechatpay-apiv3.key"
_APP_KEY = "channel-alipay-app-private.pem"


def _public(private_pem: str) -> str:
    return (
        load_private_key(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _ensure(path: Path, make: str) -> str:
    _write_new(path, make, 0o600)
    return path.read_text(encoding="ascii")


@dataclass(frozen=True)
class DevChannelKeys:
    sim_dir: Path
    platform_serial: str
    platform_public_pem: str
    alipay_public_pem: str
    apiv3_key: bytes = field(repr=False)
    merchant_serial: str
    merchant_private_pem: str = field(repr=False)
    app_private_pem: str = field(repr=False)


def ensure_channel_dev_keys(directory: Path) -> DevChannelKeys:
    """Both sides' keys under ``directory`` (``.data/dev``), kept across restarts."""
    sim = _secret_dir(directory / CHANNEL_SIM_DIR)
    alnum = string.ascii_letters + string.digits
    platform_private = _ensure(sim / _PLATFORM_KEY, generate_rsa_keypair()[0])
    serial = _ensure(sim / _PLATFORM_SERIAL, secrets.token_hex(20).upper()).strip()
    alipay_private = _ensure(sim / _ALIPAY_KEY, generate_rsa_keypair()[0])
    merchant_private = _ensure(directory / _MERCHANT_KEY, generate_rsa_keypair()[0])
    merchant_serial = _ensure(directory / _MERCHANT_SERIAL, secrets.token_hex(20).upper()).strip()
    apiv3 = _ensure(directory / _APIV3_KEY, "".join(secrets.choice(alnum) for _ in range(32)))
    app_private = _ensure(directory / _APP_KEY, generate_rsa_keypair()[0])
    merchants = {
        "wechatpay": [
            {
                "mchid": DEV_MCHID,
                "appid": DEV_APPID,
                "apiv3Key": apiv3.strip(),
                "merchantSerial": merchant_serial,
                "merchantPublicKey": _public(merchant_private),
            }
        ],
        "alipay": [
            {
                "appId": DEV_ALIPAY_APP_ID,
                "sellerId": DEV_SELLER_ID,
                "appPublicKey": _public(app_private),
            }
        ],
    }
    (sim / _MERCHANTS).write_text(json.dumps(merchants, indent=2), encoding="utf-8")
    (sim / _MERCHANTS).chmod(0o600)
    return DevChannelKeys(
        sim_dir=sim,
        platform_serial=serial,
        platform_public_pem=_public(platform_private),
        alipay_public_pem=_public(alipay_private),
        apiv3_key=apiv3.strip().encode("ascii"),
        merchant_serial=merchant_serial,
        merchant_private_pem=merchant_private,
        app_private_pem=app_private,
    )


async def register_channel_apps(conn: Connection, master_key: str, keys: DevChannelKeys) -> None:
    """The simulator trusted as the dev WeChat Pay and Alipay apps (each its channel's active
    one), as ``fundhub channel add`` would register them."""
    await upsert_wechatpay_app(
        conn,
        master_key,
        mchid=DEV_MCHID,
        appid=DEV_APPID,
        apiv3_key=keys.apiv3_key,
        platform_keys=[(keys.platform_serial, normalize_public_key(keys.platform_public_pem))],
        merchant_key=(keys.merchant_serial, keys.merchant_private_pem),
    )
    await upsert_alipay_app(
        conn,
        master_key,
        app_id=DEV_ALIPAY_APP_ID,
        seller_id=DEV_SELLER_ID,
        alipay_public_key_pem=normalize_public_key(keys.alipay_public_pem),
        app_private_key_pem=keys.app_private_pem,
    )
