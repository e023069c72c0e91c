"""The channel apps we trust: which keys verify a channel's notifications and answers, which
secrets open its resources and sign our requests, and which app takes new payments.

A WeChat Pay app is a merchant id (``mchid``) and an ``appid``, the merchant's APIv3 key (it
decrypts the notifications' resources), WeChat Pay's platform public keys by serial (several at
once while WeChat Pay rotates them: ``fundhub channel add-serial`` / ``remove-serial``) and,
to call the API, the merchant's API private key and its certificate serial. An Alipay app is an
``app_id``, its seller (``seller_id``, the PID), Alipay's public key and, to call the API, the
app's private key. The secrets are sealed under the master key; only a process given it (the
gateway to decrypt resources, the process calling the channels to sign) opens them.

For the orders context: ``active_app(conn_or_store, channel)`` is the app that takes new
payments of a channel (one per channel for now: the one last added, unless added with
``--no-activate``); put its ``app_id`` in ``PaymentOrder.app_id``. A notification names its
app (``ChannelEvent.app_id`` / ``merchant_ref``), which the gateway has already checked is one
of ours; the order's own app is the one to compare it with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fundhub.channels.events import Channel
from fundhub.common.cache import TtlCache
from fundhub.common.db import Connection, Pool, Row
from fundhub.common.sealing import MasterKeys, seal, unseal
from fundhub.common.signing import load_private_key, load_public_key

log = structlog.get_logger(__name__)

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,64}")
APIV3_KEY_BYTES = 32


class InvalidChannelApp(ValueError):
    """An app registered with a bad id, key or serial; the message says which."""


class LastPlatformKey(InvalidChannelApp):
    """Removing an app's only platform key would leave it unable to verify anything."""


@dataclass(frozen=True)
class ChannelApp:
    """An app as anyone may see it: no secret."""

    channel: Channel
    app_id: str  # WeChat Pay appid, Alipay app_id
    merchant_ref: str  # WeChat Pay mchid, Alipay seller_id
    active: bool
    platform_serials: tuple[str, ...] = ()  # WeChat Pay
    merchant_serial: str | None = None  # WeChat Pay
    can_call_api: bool = False  # the merchant's private key is registered

    def as_json(self) -> dict[str, object]:
        return {
            "channel": self.channel.value,
            "appId": self.app_id,
            "merchantRef": self.merchant_ref,
            "active": self.active,
            "platformSerials": list(self.platform_serials),
            "merchantSerial": self.merchant_serial,
            "canCallApi": self.can_call_api,
        }


@dataclass(frozen=True)
class WechatPayKeys:
    app: ChannelApp
    apiv3_key: bytes = field(repr=False)
    platform_keys: Mapping[str, RSAPublicKey]
    merchant_private_key: RSAPrivateKey | None = field(default=None, repr=False)

    @property
    def mchid(self) -> str:
        return self.app.merchant_ref


@dataclass(frozen=True)
class AlipayKeys:
    app: ChannelApp
    alipay_public_key: RSAPublicKey
    app_private_key: RSAPrivateKey | None = field(default=None, repr=False)

    @property
    def seller_id(self) -> str:
        return self.app.merchant_ref


class AppKeys(Protocol):
    """Where an adapter finds an app's keys (``ChannelAppStore``, or a test's own)."""

    async def wechatpay(self, appid: str) -> WechatPayKeys | None: ...

    async def alipay(self, app_id: str) -> AlipayKeys | None: ...


# --- what an operator gives --------------------------------------------------------------------


def parse_id(text: str, option: str) -> str:
    value = text.strip()
    if not _ID.fullmatch(value):
        raise InvalidChannelApp(f"{option} must be 1 to 32 letters, digits, '_' or '-'")
    return value


def parse_serial(text: str) -> str:
    value = text.strip()
    if not _SERIAL.fullmatch(value):
        raise InvalidChannelApp("a serial is 1 to 64 letters, digits, '_' or '-'")
    return value


def read_apiv3_key(raw: bytes) -> bytes:
    """The APIv3 key as set in WeChat Pay's merchant platform: 32 printable ASCII characters
    (a trailing newline of the file is not part of it)."""
    key = raw.rstrip(b"\r\n")
    if len(key) != APIV3_KEY_BYTES or not all(0x21 <= b <= 0x7E for b in key):
        raise InvalidChannelApp(
            f"the APIv3 key must be {APIV3_KEY_BYTES} printable ASCII characters"
        )
    return key


def normalize_public_key(text: str) -> str:
    """An RSA public key (PEM, base64 DER, or the X.509 certificate WeChat Pay hands out for a
    platform serial) as a SubjectPublicKeyInfo PEM."""
    try:
        if "-----BEGIN CERTIFICATE-----" in text:
            candidate = x509.load_pem_x509_certificate(text.encode("ascii")).public_key()
            if not isinstance(candidate, RSAPublicKey):
                raise ValueError("not an RSA key")
            key = candidate
        else:
            key = load_public_key(text)
    except Exception as exc:  # cryptography raises several types for malformed input
        raise InvalidChannelApp(f"not a usable RSA public key or certificate: {exc}") from None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def normalize_private_key(text: str) -> str:
    """An unencrypted RSA private key as PKCS#8 PEM."""
    try:
        key = load_private_key(text.strip() + "\n")
    except Exception as exc:
        raise InvalidChannelApp(f"not a usable unencrypted RSA private key: {exc}") from None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


# --- the table --------------------------------------------------------------------------------


async def _take_active(conn: Connection, channel: Channel, app_id: str) -> None:
    await conn.execute(
        "UPDATE channel_apps SET active = false, updated_at = now()"
        " WHERE channel = $1 AND app_id <> $2 AND active",
        channel.value,
        app_id,
    )


async def _merchant_ref_of(conn: Connection, channel: Channel, app_id: str) -> str | None:
    ref: str | None = await conn.fetchval(
        "SELECT merchant_ref FROM channel_apps WHERE channel = $1 AND app_id = $2 FOR UPDATE",
        channel.value,
        app_id,
    )
    return ref


async def upsert_wechatpay_app(
    conn: Connection,
    master_keys: MasterKeys,
    *,
    mchid: str,
    appid: str,
    apiv3_key: bytes,
    platform_keys: Sequence[tuple[str, str]],
    merchant_key: tuple[str, str] | None = None,
    activate: bool = True,
) -> None:
    """Register (or update) a WeChat Pay app: its APIv3 key, the platform keys given (added to
    those it has), and the merchant's key (``(serial, private PEM)``, kept when not given)."""
    async with conn.transaction():
        known = await _merchant_ref_of(conn, Channel.WECHATPAY, appid)
        if known is not None and known != mchid:
            raise InvalidChannelApp(f"appid {appid} is registered under mchid {known}")
        if activate:
            await _take_active(conn, Channel.WECHATPAY, appid)
        serial, private_pem = merchant_key or (None, None)
        await conn.execute(
            """
            INSERT INTO channel_apps (channel, app_id, merchant_ref, active, apiv3_key_sealed,
                                      merchant_private_key_sealed, merchant_serial)
            VALUES ('WECHATPAY', $1, $2, $3, $4, $5, $6)
            ON CONFLICT (channel, app_id) DO UPDATE
               SET apiv3_key_sealed = EXCLUDED.apiv3_key_sealed,
                   active = channel_apps.active OR EXCLUDED.active,
                   merchant_private_key_sealed = COALESCE(EXCLUDED.merchant_private_key_sealed,
                                                          channel_apps.merchant_private_key_sealed),
                   merchant_serial = COALESCE(EXCLUDED.merchant_serial,
                                              channel_apps.merchant_serial),
                   updated_at = now()
            """,
            appid,
            mchid,
            activate,
            seal(apiv3_key, master_keys),
            None if private_pem is None else seal(private_pem.encode("ascii"), master_keys),
            serial,
        )
        for platform_serial, pem in platform_keys:
            await _add_platform_key(conn, appid, platform_serial, pem)


async def upsert_alipay_app(
    conn: Connection,
    master_keys: MasterKeys,
    *,
    app_id: str,
    seller_id: str,
    alipay_public_key_pem: str,
    app_private_key_pem: str | None = None,
    activate: bool = True,
) -> None:
    """Register (or update) an Alipay app; its private key is kept when not given."""
    async with conn.transaction():
        known = await _merchant_ref_of(conn, Channel.ALIPAY, app_id)
        if known is not None and known != seller_id:
            raise InvalidChannelApp(f"app_id {app_id} is registered with seller_id {known}")
        if activate:
            await _take_active(conn, Channel.ALIPAY, app_id)
        await conn.execute(
            """
            INSERT INTO channel_apps (channel, app_id, merchant_ref, active, alipay_public_key_pem,
                                      merchant_private_key_sealed)
            VALUES ('ALIPAY', $1, $2, $3, $4, $5)
            ON CONFLICT (channel, app_id) DO UPDATE
               SET alipay_public_key_pem = EXCLUDED.alipay_public_key_pem,
                   active = channel_apps.active OR EXCLUDED.active,
                   merchant_private_key_sealed = COALESCE(EXCLUDED.merchant_private_key_sealed,
                                                          channel_apps.merchant_private_key_sealed),
                   updated_at = now()
            """,
            app_id,
            seller_id,
            activate,
            alipay_public_key_pem,
            None
            if app_private_key_pem is None
            else seal(app_private_key_pem.encode("ascii"), master_keys),
        )


async def _add_platform_key(conn: Connection, appid: str, serial: str, pem: str) -> bool:
    existing = await conn.fetchval(
        "SELECT public_key_pem FROM channel_platform_keys"
        " WHERE channel = 'WECHATPAY' AND app_id = $1 AND serial = $2",
        appid,
        serial,
    )
    if existing is not None:
        if existing != pem:
            # A serial names one key: a new key under an old serial is a mistake or an attack.
            raise InvalidChannelApp(f"serial {serial} is trusted with another key; remove it first")
        return False
    await conn.execute(
        "INSERT INTO channel_platform_keys (channel, app_id, serial, public_key_pem)"
        " VALUES ('WECHATPAY', $1, $2, $3)",
        appid,
        serial,
        pem,
    )
    return True


async def add_platform_key(conn: Connection, appid: str, serial: str, pem: str) -> bool:
    """Trust one more WeChat Pay platform key for an app; False when it already has it."""
    async with conn.transaction():
        if await _merchant_ref_of(conn, Channel.WECHATPAY, appid) is None:
            raise InvalidChannelApp(f"no WeChat Pay app {appid!r}; add it with `channel add`")
        return await _add_platform_key(conn, appid, serial, pem)


async def remove_platform_key(conn: Connection, appid: str, serial: str) -> None:
    """Stop trusting one platform key; an app's last one cannot be removed."""
    async with conn.transaction():
        if await _merchant_ref_of(conn, Channel.WECHATPAY, appid) is None:
            raise InvalidChannelApp(f"no WeChat Pay app {appid!r}")
        serials = [
            r["serial"]
            for r in await conn.fetch(
                "SELECT serial FROM channel_platform_keys"
                " WHERE channel = 'WECHATPAY' AND app_id = $1 FOR UPDATE",
                appid,
            )
        ]
        if serial not in serials:
            raise InvalidChannelApp(f"WeChat Pay app {appid} has no platform serial {serial}")
        if len(serials) == 1:
            raise LastPlatformKey(
                f"{serial} is the last platform key of WeChat Pay app {appid};"
                " add its successor first"
            )
        await conn.execute(
            "DELETE FROM channel_platform_keys"
            " WHERE channel = 'WECHATPAY' AND app_id = $1 AND serial = $2",
            appid,
            serial,
        )


_APPS = """
SELECT a.channel, a.app_id, a.merchant_ref, a.active, a.merchant_serial,
       a.merchant_private_key_sealed IS NOT NULL AS can_call_api,
       ARRAY(SELECT k.serial FROM channel_platform_keys k
              WHERE k.channel = a.channel AND k.app_id = a.app_id ORDER BY k.added_at, k.serial)
         AS serials
  FROM channel_apps a
"""


def _app(row: Row) -> ChannelApp:
    serials = row["serials"]
    assert isinstance(serials, list)
    return ChannelApp(
        channel=Channel(str(row["channel"])),
        app_id=str(row["app_id"]),
        merchant_ref=str(row["merchant_ref"]),
        active=bool(row["active"]),
        platform_serials=tuple(serials),
        merchant_serial=None if row["merchant_serial"] is None else str(row["merchant_serial"]),
        can_call_api=bool(row["can_call_api"]),
    )


async def list_apps(conn: Connection | Pool) -> list[ChannelApp]:
    rows = await conn.fetch(_APPS + " ORDER BY a.channel, a.app_id")
    return [_app(row) for row in rows]


async def _active(conn: Connection | Pool, channel: Channel) -> ChannelApp | None:
    row = await conn.fetchrow(_APPS + " WHERE a.channel = $1 AND a.active", channel.value)
    return None if row is None else _app(row)


async def active_app(
    source: Connection | Pool | ChannelAppStore, channel: Channel
) -> ChannelApp | None:
    """The app that takes ``channel``'s new payments, or None when none is registered.

    Given the store, from its cache (a change is seen within its TTL); given a connection or a
    pool, read now."""
    if isinstance(source, ChannelAppStore):
        return await source.active(channel)
    return await _active(source, channel)


async def reseal_channel_secrets(conn: Connection, master_keys: MasterKeys) -> int:
    """Every channel secret re-sealed under the first of ``master_keys`` (the caller holds the
    transaction); how many blobs were."""
    count = 0
    rows = await conn.fetch(
        "SELECT channel, app_id, apiv3_key_sealed, merchant_private_key_sealed"
        " FROM channel_apps FOR UPDATE"
    )
    for row in rows:
        blobs = [row["apiv3_key_sealed"], row["merchant_private_key_sealed"]]
        resealed = [
            None if b is None else seal(unseal(bytes(b), master_keys), master_keys) for b in blobs
        ]
        await conn.execute(
            "UPDATE channel_apps SET apiv3_key_sealed = $3, merchant_private_key_sealed = $4"
            " WHERE channel = $1 AND app_id = $2",
            row["channel"],
            row["app_id"],
            *resealed,
        )
        count += sum(b is not None for b in blobs)
    return count


# --- the cached view every request reads ----------------------------------------------------------


class ChannelAppStore:
    """The registered apps and their keys, cached ``ttl_s`` (a change applies within it).

    ``merchant_keys``: whether to open the merchant's private keys too; only the process that
    calls the channels' APIs needs them, not the gateway that takes their notifications."""

    def __init__(
        self,
        pool: Pool,
        master_keys: MasterKeys,
        ttl_s: float = 10.0,
        *,
        merchant_keys: bool = False,
    ) -> None:
        self._pool = pool
        self._master_keys = master_keys
        self._merchant_keys = merchant_keys
        self._active: TtlCache[Channel, ChannelApp] = TtlCache(ttl_s)
        self._wechatpay: TtlCache[str, WechatPayKeys] = TtlCache(ttl_s)
        self._by_serial: TtlCache[str, tuple[WechatPayKeys, ...]] = TtlCache(ttl_s)
        self._alipay: TtlCache[str, AlipayKeys] = TtlCache(ttl_s)

    async def active(self, channel: Channel) -> ChannelApp | None:
        return await self._active.get(channel, lambda c: _active(self._pool, c))

    async def wechatpay(self, appid: str) -> WechatPayKeys | None:
        return await self._wechatpay.get(appid, self._load_wechatpay)

    async def wechatpay_by_serial(self, serial: str) -> tuple[WechatPayKeys, ...]:
        """The apps that trust platform key ``serial`` (one, unless a serial is shared)."""
        return await self._by_serial.get(serial, self._load_by_serial) or ()

    async def alipay(self, app_id: str) -> AlipayKeys | None:
        return await self._alipay.get(app_id, self._load_alipay)

    async def _load_wechatpay(self, appid: str) -> WechatPayKeys | None:
        found = await self._wechatpay_rows("a.app_id = $1", appid)
        return found[0] if found else None

    async def _load_by_serial(self, serial: str) -> tuple[WechatPayKeys, ...] | None:
        found = await self._wechatpay_rows(
            "a.app_id IN (SELECT app_id FROM channel_platform_keys"
            " WHERE channel = 'WECHATPAY' AND serial = $1)",
            serial,
        )
        return tuple(found) or None

    async def _wechatpay_rows(self, where: str, value: str) -> list[WechatPayKeys]:
        rows = await self._pool.fetch(
            "SELECT a.channel, a.app_id, a.merchant_ref, a.active, a.merchant_serial,"
            " a.merchant_private_key_sealed IS NOT NULL AS can_call_api,"
            " a.apiv3_key_sealed, a.merchant_private_key_sealed,"
            " ARRAY(SELECT k.serial FROM channel_platform_keys k WHERE k.channel = a.channel"
            "       AND k.app_id = a.app_id ORDER BY k.serial) AS serials,"
            " ARRAY(SELECT k.public_key_pem FROM channel_platform_keys k"
            "       WHERE k.channel = a.channel AND k.app_id = a.app_id ORDER BY k.serial) AS pems"
            f" FROM channel_apps a WHERE a.channel = 'WECHATPAY' AND {where} ORDER BY a.app_id",
            value,
        )
        return [
            WechatPayKeys(
                app=_app(row),
                apiv3_key=unseal(bytes(row["apiv3_key_sealed"]), self._master_keys),
                platform_keys={
                    s: load_public_key(p) for s, p in zip(row["serials"], row["pems"], strict=True)
                },
                merchant_private_key=self._private_key(row["merchant_private_key_sealed"]),
            )
            for row in rows
        ]

    async def _load_alipay(self, app_id: str) -> AlipayKeys | None:
        row = await self._pool.fetchrow(
            "SELECT a.channel, a.app_id, a.merchant_ref, a.active, a.merchant_serial,"
            " a.merchant_private_key_sealed IS NOT NULL AS can_call_api,"
            " a.alipay_public_key_pem, a.merchant_private_key_sealed, '{}'::text[] AS serials"
            " FROM channel_apps a WHERE a.channel = 'ALIPAY' AND a.app_id = $1",
            app_id,
        )
        if row is None:
            return None
        return AlipayKeys(
            app=_app(row),
            alipay_public_key=load_public_key(row["alipay_public_key_pem"]),
            app_private_key=self._private_key(row["merchant_private_key_sealed"]),
        )

    def _private_key(self, sealed: bytes | None) -> RSAPrivateKey | None:
        if sealed is None or not self._merchant_keys:
            return None
        return load_private_key(unseal(bytes(sealed), self._master_keys))
