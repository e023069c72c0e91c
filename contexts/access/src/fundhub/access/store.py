"""The access tables: API keys (secrets sealed under the master key) and request nonces."""

from __future__ import annotations

from fundhub.access.keys import ApiKey, NewApiKey
from fundhub.common.cache import TtlCache
from fundhub.common.cidrs import Network, as_networks
from fundhub.common.db import Connection, Pool
from fundhub.common.sealing import seal, unseal

# Recorded by itself, or by a request's own statement when its effect is written (the payouts
# acceptance inserts its nonce in the same statement as the payout).
INSERT_NONCE = (
    "INSERT INTO api_nonces (key_id, nonce) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true"
)


async def insert_api_key(conn: Connection, key: NewApiKey, master_key: str) -> None:
    """Store the key with both secrets sealed under the master key (never in clear)."""
    await conn.execute(
        "INSERT INTO api_keys"
        " (key_id, name, secret_sealed, scopes, accounts, webhook_secret_sealed)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key.key_id,
        key.name,
        seal(key.secret.encode("ascii"), master_key),
        key.scopes,
        key.accounts,
        seal(key.webhook_secret.encode("ascii"), master_key),
    )


async def restrict_api_key(
    conn: Connection, key_id: str, client_cert_sha256: str | None, allowed_cidrs: list[Network]
) -> bool:
    """Bind the key to a client certificate and address ranges (None / empty: unrestricted).
    False when there is no such key. Replicas see it once their key cache expires."""
    status = await conn.execute(
        "UPDATE api_keys SET client_cert_sha256 = $2, allowed_cidrs = $3 WHERE key_id = $1",
        key_id,
        client_cert_sha256,
        allowed_cidrs,
    )
    return status != "UPDATE 0"


async def take_nonce(pool: Pool, key_id: str, nonce: str) -> bool:
    """Record the nonce; False when the key used it before (a replay)."""
    return bool(await pool.fetchval(INSERT_NONCE, key_id, nonce))


async def purge_nonces(pool: Pool, older_than_s: float) -> int:
    """Nonces older than the timestamp window can never be replayed: the time check refuses."""
    result = await pool.execute(
        "DELETE FROM api_nonces WHERE seen_at < now() - make_interval(secs => $1)", older_than_s
    )
    return int(result.split()[-1])


async def sealed_webhook_secret(pool: Pool, key_id: str) -> bytes | None:
    value = await pool.fetchval(
        "SELECT webhook_secret_sealed FROM api_keys WHERE key_id = $1", key_id
    )
    return None if value is None else bytes(value)


class ApiKeyStore:
    """Disabling a key takes effect within ``ttl_s``; secrets stay unsealed only in memory."""

    def __init__(self, pool: Pool, master_key: str, ttl_s: float = 30.0) -> None:
        self._pool = pool
        self._master_key = master_key
        self._cache: TtlCache[str, ApiKey] = TtlCache(ttl_s)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._cache.get(key_id, self._load)

    async def _load(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            "SELECT key_id, secret_sealed, scopes, accounts, client_cert_sha256, allowed_cidrs"
            " FROM api_keys "
            "WHERE key_id = $1 AND disabled_at IS NULL",
            key_id,
        )
        if row is None:
            return None
        return ApiKey(
            key_id=row["key_id"],
            secret=unseal(bytes(row["secret_sealed"]), self._master_key).decode(),
            scopes=frozenset(row["scopes"]),
            accounts=frozenset(row["accounts"]),
            client_cert_sha256=row["client_cert_sha256"],
            allowed_cidrs=as_networks(row["allowed_cidrs"]),
        )
