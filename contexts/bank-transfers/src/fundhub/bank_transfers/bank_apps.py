"""Bank apps: the bank's RSA public keys per ``app_id``, which verify its signed notifications.

An app has its registered key (``bank-app add``) and may have more (``bank-app add-key``): the
bank rotates its key by signing with a new one, so both verify until the old one is removed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fundhub.common.cache import TtlCache
from fundhub.common.cidrs import Network, as_networks
from fundhub.common.db import Connection, Pool
from fundhub.common.signing import load_public_key, rsa2_verify

# The app id of the seed documents; the dev stack registers the bank simulator under it.
SEED_BANK_APP_ID = "20210911888888888888888888"
_APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # the bank's app_id is string(32)
_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Only these may be left out of the signed string: every other parameter is what the signature
# vouches for (biz_content, app_id, timestamp...); left out, one signature would authorise any
# content, any app's key or any time. ``sign`` itself cannot sign itself; ``sign_type`` names
# the algorithm, which ``check_protocol`` fixes to RSA2 anyway.
SAFE_SIGN_EXCLUDES = frozenset({"sign", "sign_type"})

log = structlog.get_logger(__name__)


class InvalidBankApp(ValueError):
    """A bank app registered with a bad id, key or exclusion; the message says which."""


@dataclass(frozen=True)
class BankApp:
    app_id: str
    public_key: RSAPublicKey
    sign_excludes: tuple[str, ...]
    # Where its notifications may come from (empty: anywhere); checked after the signature.
    allowed_cidrs: tuple[Network, ...] = ()
    other_keys: tuple[RSAPublicKey, ...] = ()

    def verifies(self, params: Mapping[str, Any], signature: str) -> bool:
        """Signed by any of the app's keys (more than one while the bank rotates its key)."""
        return any(
            rsa2_verify(params, signature, key, self.sign_excludes)
            for key in (self.public_key, *self.other_keys)
        )

    @property
    def usable(self) -> bool:
        """False for a row stored with an unsafe exclusion (before the CLI refused them)."""
        return not unsafe_sign_excludes(self.sign_excludes)


class LastBankKey(InvalidBankApp):
    """Removing the only key of an app would leave it unable to verify anything."""


def fingerprint(public_key_pem: str) -> str:
    """How an operator names one of an app's keys: SHA-256 of its normalised PEM, 16 hex."""
    return hashlib.sha256(public_key_pem.encode("ascii")).hexdigest()[:16]


def parse_app_id(text: str) -> str:
    app_id = text.strip()
    if not _APP_ID.fullmatch(app_id):
        raise InvalidBankApp("--app-id must be 1 to 32 letters, digits, '_' or '-'")
    return app_id


def parse_sign_excludes(text: str | None) -> list[str]:
    """Parameters left out of the signed string; ``sign`` itself is always among them."""
    names = [item.strip() for item in (text or "").split(",") if item.strip()]
    bad = [n for n in names if not _PARAM.fullmatch(n)]
    if bad:
        raise InvalidBankApp(f"invalid parameter name {bad[0]!r} in --sign-excludes")
    unsafe = unsafe_sign_excludes(names)
    if unsafe:
        raise InvalidBankApp(
            f"--sign-excludes may name only sign and sign_type, not {unsafe[0]!r}: "
            "a parameter left out of the signature could be changed at will"
        )
    return list(dict.fromkeys(["sign", *names]))


def unsafe_sign_excludes(names: Iterable[str]) -> list[str]:
    """The exclusions that would leave a signed parameter unprotected."""
    return [n for n in names if n not in SAFE_SIGN_EXCLUDES]


def normalize_public_key(text: str) -> str:
    """Check the text is an RSA public key and return it as a SubjectPublicKeyInfo PEM."""
    try:
        key = load_public_key(text)
    except Exception as exc:  # cryptography raises several types for malformed input
        raise InvalidBankApp(f"not a usable RSA public key: {exc}") from None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


async def upsert_bank_app(
    conn: Connection, app_id: str, public_key_pem: str, sign_excludes: list[str]
) -> bool:
    """Insert or update; returns True when something changed."""
    status = await conn.execute(
        """
        INSERT INTO bank_apps (app_id, public_key_pem, sign_excludes) VALUES ($1, $2, $3)
        ON CONFLICT (app_id) DO UPDATE
           SET public_key_pem = EXCLUDED.public_key_pem,
               sign_excludes = EXCLUDED.sign_excludes,
               updated_at = now()
         WHERE bank_apps.public_key_pem IS DISTINCT FROM EXCLUDED.public_key_pem
            OR bank_apps.sign_excludes IS DISTINCT FROM EXCLUDED.sign_excludes
        """,
        app_id,
        public_key_pem,
        sign_excludes,
    )
    return status.rsplit(" ", 1)[-1] != "0"


async def restrict_bank_app(conn: Connection, app_id: str, allowed_cidrs: list[Network]) -> bool:
    """Set the ranges the app's notifications may come from (empty: anywhere); False when
    there is no such app."""
    status = await conn.execute(
        "UPDATE bank_apps SET allowed_cidrs = $2, updated_at = now() WHERE app_id = $1",
        app_id,
        allowed_cidrs,
    )
    return status != "UPDATE 0"


async def add_bank_key(conn: Connection, app_id: str, public_key_pem: str) -> bool:
    """Trust one more key for a registered app; False when it already has that key."""
    async with conn.transaction():
        primary = await conn.fetchval(
            "SELECT public_key_pem FROM bank_apps WHERE app_id = $1 FOR UPDATE", app_id
        )
        if primary is None:
            raise InvalidBankApp(f"no bank app {app_id!r}; register it with `bank-app add`")
        if primary == public_key_pem:
            return False
        status = await conn.execute(
            "INSERT INTO bank_app_keys (app_id, fingerprint, public_key_pem) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            app_id,
            fingerprint(public_key_pem),
            public_key_pem,
        )
    return status.rsplit(" ", 1)[-1] != "0"


async def remove_bank_key(conn: Connection, app_id: str, key_fingerprint: str) -> None:
    """Stop trusting one key; the app's last key cannot be removed. When the registered key
    goes, the most recently added one takes its place."""
    async with conn.transaction():
        primary = await conn.fetchval(
            "SELECT public_key_pem FROM bank_apps WHERE app_id = $1 FOR UPDATE", app_id
        )
        if primary is None:
            raise InvalidBankApp(f"no bank app {app_id!r}")
        status = await conn.execute(
            "DELETE FROM bank_app_keys WHERE app_id = $1 AND fingerprint = $2",
            app_id,
            key_fingerprint,
        )
        if status.rsplit(" ", 1)[-1] != "0":
            return
        if fingerprint(primary) != key_fingerprint:
            raise InvalidBankApp(f"bank app {app_id} has no key {key_fingerprint}")
        successor = await conn.fetchrow(
            "DELETE FROM bank_app_keys WHERE app_id = $1 AND fingerprint ="
            " (SELECT fingerprint FROM bank_app_keys WHERE app_id = $1"
            "  ORDER BY added_at DESC, fingerprint LIMIT 1)"
            " RETURNING public_key_pem",
            app_id,
        )
        if successor is None:
            raise LastBankKey(
                f"{key_fingerprint} is the last key of bank app {app_id}; add its successor first"
            )
        await conn.execute(
            "UPDATE bank_apps SET public_key_pem = $2, updated_at = now() WHERE app_id = $1",
            app_id,
            successor["public_key_pem"],
        )


async def bank_app_keys(conn: Connection, app_id: str) -> list[tuple[str, str]]:
    """(fingerprint, role) of each of the app's keys: ``registered`` first, then ``added``."""
    primary = await conn.fetchval("SELECT public_key_pem FROM bank_apps WHERE app_id = $1", app_id)
    if primary is None:
        raise InvalidBankApp(f"no bank app {app_id!r}")
    others = await conn.fetch(
        "SELECT fingerprint FROM bank_app_keys WHERE app_id = $1 ORDER BY added_at", app_id
    )
    return [(fingerprint(primary), "registered"), *((r["fingerprint"], "added") for r in others)]


class BankAppStore:
    """The registered apps, cached ``ttl_s``: every notification needs its app's key."""

    def __init__(self, pool: Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._cache: TtlCache[str, BankApp] = TtlCache(ttl_s)

    async def get(self, app_id: str) -> BankApp | None:
        return await self._cache.get(app_id, self._load)

    async def _load(self, app_id: str) -> BankApp | None:
        row = await self._pool.fetchrow(
            "SELECT app_id, public_key_pem, sign_excludes, allowed_cidrs,"
            " ARRAY(SELECT k.public_key_pem FROM bank_app_keys k WHERE k.app_id = a.app_id"
            "       ORDER BY k.added_at DESC) AS other_keys"
            " FROM bank_apps a WHERE app_id = $1",
            app_id,
        )
        if row is None:
            return None
        app = BankApp(
            app_id=row["app_id"],
            public_key=load_public_key(row["public_key_pem"]),
            sign_excludes=tuple(row["sign_excludes"]),
            allowed_cidrs=as_networks(row["allowed_cidrs"]),
            other_keys=tuple(load_public_key(pem) for pem in row["other_keys"]),
        )
        if not app.usable:
            # Stored before the CLI refused such rows (or written by hand): verifying with it
            # would let one signature authorise anything, so every notification is refused.
            log.error(
                "bank_app_unsafe_sign_excludes",
                app_id=app.app_id,
                unsafe=unsafe_sign_excludes(app.sign_excludes),
            )
        return app
