"""The channel simulator as a trusted channel app: the merchant's side of the keys (TEST keys,
made per run, never stored in the repo), registered on the simulator and with fundhub."""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from fundhub.channels.apps import AlipayKeys, ChannelApp, WechatPayKeys
from fundhub.channels.events import Channel
from fundhub.common.signing import generate_rsa_keypair, load_private_key, load_public_key

_ALNUM = string.ascii_letters + string.digits


def _digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


@dataclass
class MerchantKeys:
    """A platform's accounts with both channels, as a test plays them (TEST keys)."""

    mchid: str = field(default_factory=lambda: "19" + _digits(8))
    appid: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    apiv3_key: str = field(
        default_factory=lambda: "".join(secrets.choice(_ALNUM) for _ in range(32))
    )
    merchant_serial: str = field(default_factory=lambda: secrets.token_hex(20).upper())
    alipay_app_id: str = field(default_factory=lambda: "2021" + _digits(12))
    seller_id: str = field(default_factory=lambda: "2088" + _digits(12))
    wechatpay_pair: tuple[str, str] = field(default_factory=generate_rsa_keypair)
    alipay_pair: tuple[str, str] = field(default_factory=generate_rsa_keypair)

    @cached_property
    def merchant_private_key(self) -> RSAPrivateKey:
        return load_private_key(self.wechatpay_pair[0])

    @cached_property
    def app_private_key(self) -> RSAPrivateKey:
        return load_private_key(self.alipay_pair[0])

    def wechatpay_merchant(self) -> dict[str, str]:
        """What ``PUT /sim/wechatpay/merchants/{mchid}`` takes."""
        return {
            "appid": self.appid,
            "apiv3Key": self.apiv3_key,
            "merchantSerial": self.merchant_serial,
            "merchantPublicKey": self.wechatpay_pair[1],
        }

    def alipay_app(self) -> dict[str, str]:
        return {"sellerId": self.seller_id, "appPublicKey": self.alipay_pair[1]}


async def serve_on_simulator(
    http: httpx.AsyncClient, sim_url: str, keys: MerchantKeys
) -> dict[str, Any]:
    """Register the merchant with the simulator; returns its public keys (``/sim/keys``)."""
    answer = await http.put(
        f"{sim_url}/sim/wechatpay/merchants/{keys.mchid}", json=keys.wechatpay_merchant()
    )
    assert answer.status_code == 200, answer.text
    answer = await http.put(
        f"{sim_url}/sim/alipay/apps/{keys.alipay_app_id}", json=keys.alipay_app()
    )
    assert answer.status_code == 200, answer.text
    published: dict[str, Any] = (await http.get(f"{sim_url}/sim/keys")).json()
    return published


def cli_add_args(
    tmp: Path, keys: MerchantKeys, sim_keys: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The two ``fundhub channel add`` command lines that trust the simulator for ``keys``."""
    tag = uuid.uuid4().hex[:8]

    def write(name: str, text: str) -> str:
        path = tmp / f"{tag}-{name}"
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    wechat = sim_keys["wechatpay"]
    wechatpay = [
        "channel", "add", "wechatpay",
        "--mchid", keys.mchid,
        "--appid", keys.appid,
        "--apiv3-key-file", write("apiv3.key", keys.apiv3_key + "\n"),
        "--platform-serial", wechat["platformSerial"],
        "--platform-public-key", write("platform.pem", wechat["platformPublicKey"]),
        "--merchant-private-key", write("merchant.pem", keys.wechatpay_pair[0]),
        "--merchant-serial", keys.merchant_serial,
        "--json",
    ]  # fmt: skip
    alipay = [
        "channel", "add", "alipay",
        "--app-id", keys.alipay_app_id,
        "--seller-id", keys.seller_id,
        "--alipay-public-key", write("alipay.pem", sim_keys["alipay"]["alipayPublicKey"]),
        "--app-private-key", write("app.pem", keys.alipay_pair[0]),
        "--json",
    ]  # fmt: skip
    return wechatpay, alipay


class StaticKeys:
    """``AppKeys`` without a database: the one app of each channel, with the simulator's keys
    (unit tests only)."""

    def __init__(self, keys: MerchantKeys, sim_keys: dict[str, Any]) -> None:
        wechat = sim_keys["wechatpay"]
        self.wechatpay_keys = WechatPayKeys(
            app=ChannelApp(
                Channel.WECHATPAY,
                keys.appid,
                keys.mchid,
                True,
                (wechat["platformSerial"],),
                keys.merchant_serial,
                True,
            ),
            apiv3_key=keys.apiv3_key.encode(),
            platform_keys={wechat["platformSerial"]: load_public_key(wechat["platformPublicKey"])},
            merchant_private_key=keys.merchant_private_key,
        )
        self.alipay_keys = AlipayKeys(
            app=ChannelApp(
                Channel.ALIPAY, keys.alipay_app_id, keys.seller_id, True, (), None, True
            ),
            alipay_public_key=load_public_key(sim_keys["alipay"]["alipayPublicKey"]),
            app_private_key=keys.app_private_key,
        )

    async def wechatpay(self, appid: str) -> WechatPayKeys | None:
        return self.wechatpay_keys if appid == self.wechatpay_keys.app.app_id else None

    async def alipay(self, app_id: str) -> AlipayKeys | None:
        return self.alipay_keys if app_id == self.alipay_keys.app.app_id else None
