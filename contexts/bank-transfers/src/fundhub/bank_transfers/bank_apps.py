"""Bank apps: the bank's RSA public key per ``app_id``, which verifies its signed notifications."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fundhub.common.cache import TtlCache
from fundhub.common.cidrs import Network, as_networks
from fundhub.common.db import Connection, Pool
from fundhub.common.signing import load_public_key

# The app id of the seed documents; the dev stack registers the bank simulator under it.
SEED_BANK_APP_ID = "20210911888888888888888888"
_APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # the bank's app_id is string(32)
_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidBankApp(ValueError):
    """A bank app registered with a bad id, key or exclusion; the message says which."""


@dataclass(frozen=True)
class BankApp:
    app_id: str
    public_key: RSAPublicKey
    sign_excludes: tuple[str, ...]
    # Where its notifications may come from (empty: anywhere); checked after the signature.
    allowed_cidrs: tuple[Network, ...] = ()


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
    return list(dict.fromkeys(["sign", *names]))


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


class BankAppStore:
    """The registered apps, cached ``ttl_s``: every notification needs its app's key."""

    def __init__(self, pool: Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._cache: TtlCache[str, BankApp] = TtlCache(ttl_s)

    async def get(self, app_id: str) -> BankApp | None:
        return await self._cache.get(app_id, self._load)

    async def _load(self, app_id: str) -> BankApp | None:
        row = await self._pool.fetchrow(
            "SELECT app_id, public_key_pem, sign_excludes, allowed_cidrs FROM bank_apps"
            " WHERE app_id = $1",
            app_id,
        )
        if row is None:
            return None
        return BankApp(
            app_id=row["app_id"],
            public_key=load_public_key(row["public_key_pem"]),
            sign_excludes=tuple(row["sign_excludes"]),
            allowed_cidrs=as_networks(row["allowed_cidrs"]),
        )
