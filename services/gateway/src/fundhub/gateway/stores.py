"""Short-lived caches over the operator tables the gateway reads on every request."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fundhub.common.sealing import unseal
from fundhub.common.signing import load_public_key


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    secret: str
    scopes: frozenset[str]
    accounts: frozenset[str]

    def may_access(self, account_id: str) -> bool:
        return "*" in self.accounts or account_id in self.accounts


@dataclass(frozen=True)
class BankApp:
    app_id: str
    public_key: RSAPublicKey
    sign_excludes: tuple[str, ...]


class ApiKeyStore:
    """Disabling a key takes effect within ``ttl_s``; secrets stay unsealed only in memory."""

    def __init__(self, pool: asyncpg.Pool, master_key: str, ttl_s: float = 30.0) -> None:
        self._pool = pool
        self._master_key = master_key
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def get(self, key_id: str) -> ApiKey | None:
        hit = self._cache.get(key_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        row = await self._pool.fetchrow(
            "SELECT key_id, secret_sealed, scopes, accounts FROM api_keys "
            "WHERE key_id = $1 AND disabled_at IS NULL",
            key_id,
        )
        key = None
        if row is not None:
            key = ApiKey(
                key_id=row["key_id"],
                secret=unseal(bytes(row["secret_sealed"]), self._master_key).decode(),
                scopes=frozenset(row["scopes"]),
                accounts=frozenset(row["accounts"]),
            )
        # Unknown ids are cached briefly too, so a flood of bad ids cannot hammer Postgres.
        self._cache[key_id] = (now if key else now - self._ttl_s + 2.0, key)
        return key


class BankAppStore:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, BankApp | None]] = {}

    async def get(self, app_id: str) -> BankApp | None:
        hit = self._cache.get(app_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        row = await self._pool.fetchrow(
            "SELECT app_id, public_key_pem, sign_excludes FROM bank_apps WHERE app_id = $1", app_id
        )
        app = None
        if row is not None:
            app = BankApp(
                app_id=row["app_id"],
                public_key=load_public_key(row["public_key_pem"]),
                sign_excludes=tuple(row["sign_excludes"]),
            )
        self._cache[app_id] = (now if app else now - self._ttl_s + 2.0, app)
        return app
