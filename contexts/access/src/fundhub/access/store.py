"""The access tables: API keys (secrets sealed under the master key) and request nonces."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import structlog

from fundhub.access.keys import (
    ApiKey,
    Environment,
    KeyState,
    NewApiKey,
    RetiringSecret,
    key_state,
    new_secret,
)
from fundhub.common import db
from fundhub.common.cache import TtlCache
from fundhub.common.cidrs import Network, as_networks
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection, Pool
from fundhub.common.sealing import MasterKeys, seal, unseal

log = structlog.get_logger(__name__)

# Recorded by itself, or by a request's own statement when its effect is written (the payouts
# acceptance inserts its nonce in the same statement as the payout).
INSERT_NONCE = (
    "INSERT INTO api_nonces (key_id, nonce) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true"
)
# Announced by the triggers of migration 0012 on every change to a key or its secrets.
KEY_CHANGES_CHANNEL = "fundhub_api_keys"
SECRET_KINDS = ("api", "webhook")
_SECRET_COLUMN = {"api": "secret_sealed", "webhook": "webhook_secret_sealed"}


class KeyNotFound(LookupError):
    """No key with that id (or it is revoked, for changes that need a live key)."""


async def insert_api_key(conn: Connection, key: NewApiKey, master_key: MasterKeys) -> None:
    """Store the key with both secrets sealed under the master key (never in clear)."""
    await conn.execute(
        "INSERT INTO api_keys (key_id, name, secret_sealed, scopes, accounts,"
        " webhook_secret_sealed, environment, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key.key_id,
        key.name,
        seal(key.secret.encode("ascii"), master_key),
        key.scopes,
        key.accounts,
        seal(key.webhook_secret.encode("ascii"), master_key),
        key.environment,
        key.expires_at,
    )


async def revoke_api_key(conn: Connection, key_id: str) -> datetime:
    """Revoked at once and for good; every gateway hears of it through the trigger's NOTIFY."""
    revoked = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE key_id = $1"
        " RETURNING revoked_at",
        key_id,
    )
    if revoked is None:
        raise KeyNotFound(key_id)
    result: datetime = revoked
    return result


async def rotate_secret(
    conn: Connection, key_id: str, kind: str, overlap: timedelta, master_key: MasterKeys
) -> tuple[str, datetime]:
    """A new current secret; the replaced one stays valid for ``overlap`` (one transaction).

    Returns the new secret and the end of the overlap. A secret retired earlier keeps its own
    end unless this overlap ends sooner: a rotation never extends an old secret's life.
    """
    column = _SECRET_COLUMN[kind]
    async with conn.transaction():
        current = await conn.fetchval(
            f"SELECT {column} FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL FOR UPDATE",
            key_id,
        )
        if current is None:
            raise KeyNotFound(key_id)
        until: datetime = await conn.fetchval("SELECT now() + $1::interval", overlap)
        await conn.execute(  # overlaps that ended: nothing verifies under them any more
            "DELETE FROM api_key_retiring_secrets WHERE key_id = $1 AND valid_until <= now()",
            key_id,
        )
        await conn.execute(
            "UPDATE api_key_retiring_secrets SET valid_until = LEAST(valid_until, $3)"
            " WHERE key_id = $1 AND kind = $2",
            key_id,
            kind,
            until,
        )
        if overlap > timedelta(0):
            await conn.execute(
                "INSERT INTO api_key_retiring_secrets (key_id, kind, secret_sealed, valid_until)"
                " VALUES ($1, $2, $3, $4)",
                key_id,
                kind,
                bytes(current),
                until,
            )
        secret = new_secret()
        await conn.execute(
            f"UPDATE api_keys SET {column} = $2 WHERE key_id = $1",
            key_id,
            seal(secret.encode("ascii"), master_key),
        )
    return secret, until


@dataclass(frozen=True)
class KeySummary:
    """A key as an operator lists it: never a secret, only which secrets are valid until when."""

    key_id: str
    name: str
    environment: str
    state: KeyState
    scopes: list[str]
    accounts: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    retiring: list[tuple[str, datetime]]  # (kind, valid until), overlaps not yet over


async def list_api_keys(conn: Connection) -> list[KeySummary]:
    now = utcnow()
    rows = await conn.fetch(
        "SELECT k.key_id, k.name, k.environment, k.scopes, k.accounts, k.created_at,"
        " k.expires_at, k.revoked_at,"
        " COALESCE(array_agg(r.kind ORDER BY r.valid_until) FILTER (WHERE r.key_id IS NOT NULL),"
        "  '{}') AS kinds,"
        " COALESCE(array_agg(r.valid_until ORDER BY r.valid_until)"
        "  FILTER (WHERE r.key_id IS NOT NULL), '{}') AS untils"
        " FROM api_keys k LEFT JOIN api_key_retiring_secrets r"
        "   ON r.key_id = k.key_id AND r.valid_until > now()"
        " GROUP BY k.key_id ORDER BY k.created_at, k.key_id"
    )
    return [
        KeySummary(
            key_id=row["key_id"],
            name=row["name"],
            environment=row["environment"],
            state=key_state(row["revoked_at"], row["expires_at"], now),
            scopes=list(row["scopes"]),
            accounts=list(row["accounts"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            retiring=list(zip(row["kinds"], row["untils"], strict=True)),
        )
        for row in rows
    ]


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


class NonceReplayed(Exception):
    """A request's nonce was used before: recorded in the request's own transaction, it stops
    the request with nothing written."""


async def take_nonce(pool: Pool | Connection, key_id: str, nonce: str) -> bool:
    """Record the nonce (on its own, or in the caller's transaction with the request's effect);
    False when the key used it before (a replay)."""
    return bool(await pool.fetchval(INSERT_NONCE, key_id, nonce))


async def take_nonces(conn: Connection, nonces: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record many (key_id, nonce) in one statement, in the caller's transaction (with the
    requests' effects); the fresh ones, the others were used before (replays)."""
    rows = await conn.fetch(
        "INSERT INTO api_nonces (key_id, nonce) SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT DO NOTHING RETURNING key_id, nonce",
        [k for k, _ in nonces],
        [n for _, n in nonces],
    )
    return {(r["key_id"], r["nonce"]) for r in rows}


async def purge_nonces(pool: Pool, older_than_s: float) -> int:
    """Nonces older than the timestamp window can never be replayed: the time check refuses."""
    result = await pool.execute(
        "DELETE FROM api_nonces WHERE seen_at < now() - make_interval(secs => $1)", older_than_s
    )
    return int(result.split()[-1])


async def sealed_webhook_secret(pool: Pool, key_id: str) -> bytes | None:
    """The current webhook secret of a key that is not revoked: callbacks are signed with it."""
    value = await pool.fetchval(
        "SELECT webhook_secret_sealed FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return None if value is None else bytes(value)


# How long a key is trusted from the cache when no change notice can arrive (the listening
# connection is down): short, so a revocation still takes effect within a second.
UNHEARD_TTL_S = 1.0
LISTEN_RETRY_S = 1.0
LISTEN_PING_S = 5.0


def _set_event(event: asyncio.Event, *_: object) -> None:
    event.set()


class ApiKeyStore:
    """Keys with their secrets unsealed in memory, cached and told of every change.

    A revocation, rotation or expiry change reaches every replica through Postgres
    LISTEN/NOTIFY (triggers of migration 0012) and drops the cached copy at once. While the
    listening connection is down, nothing is cached longer than ``UNHEARD_TTL_S``. Expiry and
    the environment are checked on every request, so a cached key expires on time.
    """

    def __init__(
        self,
        pool: Pool,
        master_key: MasterKeys,
        environment: Environment = "sandbox",
        ttl_s: float = 30.0,
        dsn: str | None = None,
    ) -> None:
        self._pool = pool
        self._master_key = master_key
        self._environment = environment
        self._dsn = dsn
        self._cache: TtlCache[str, ApiKey] = TtlCache(ttl_s)
        self._unheard: TtlCache[str, ApiKey] = TtlCache(UNHEARD_TTL_S)
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    async def get(self, key_id: str) -> ApiKey | None:
        cache = self._cache if self._listening else self._unheard
        key = await cache.get(key_id, self._load)
        if key is None or not key.usable(utcnow(), self._environment):
            return None
        return key

    def start(self) -> None:
        """Listen for key changes (needs ``dsn``); without it the cache lives ``UNHEARD_TTL_S``."""
        if self._dsn is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(self._dsn))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _changed(self, *args: Any) -> None:
        key_id = args[-1]
        self._cache.drop(key_id)
        self._unheard.drop(key_id)

    def _lost(self, *_: Any) -> None:
        self._listening = False
        self._cache.clear()

    async def _listen(self, dsn: str) -> None:
        while True:
            conn: Connection | None = None
            try:
                conn = await db.connect(dsn)
                conn.add_termination_listener(self._lost)
                await conn.add_listener(KEY_CHANGES_CHANNEL, self._changed)
                self._cache.clear()  # changes missed while not listening
                self._listening = True
                lost = asyncio.Event()
                conn.add_termination_listener(partial(_set_event, lost))
                while not conn.is_closed():
                    # A silently dead connection hears nothing: a ping now and then finds out.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=LISTEN_PING_S)
                    if not lost.is_set():
                        await conn.execute("SELECT 1", timeout=LISTEN_PING_S)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("api_key_listen_failed", error=type(exc).__name__)
            finally:
                self._lost()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(LISTEN_RETRY_S)

    async def _load(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            "SELECT key_id, secret_sealed, scopes, accounts, environment, expires_at,"
            " client_cert_sha256, allowed_cidrs,"
            " ARRAY(SELECT secret_sealed FROM api_key_retiring_secrets r"
            "       WHERE r.key_id = k.key_id AND r.kind = 'api' AND r.valid_until > now()"
            "       ORDER BY r.valid_until DESC) AS retiring_sealed,"
            " ARRAY(SELECT valid_until FROM api_key_retiring_secrets r"
            "       WHERE r.key_id = k.key_id AND r.kind = 'api' AND r.valid_until > now()"
            "       ORDER BY r.valid_until DESC) AS retiring_until"
            " FROM api_keys k WHERE key_id = $1 AND disabled_at IS NULL AND revoked_at IS NULL",
            key_id,
        )
        if row is None:
            return None
        retiring = tuple(
            RetiringSecret(unseal(bytes(sealed), self._master_key).decode(), until)
            for sealed, until in zip(row["retiring_sealed"], row["retiring_until"], strict=True)
        )
        return ApiKey(
            key_id=row["key_id"],
            secret=unseal(bytes(row["secret_sealed"]), self._master_key).decode(),
            scopes=frozenset(row["scopes"]),
            accounts=frozenset(row["accounts"]),
            environment=row["environment"],
            expires_at=row["expires_at"],
            retiring=retiring,
            client_cert_sha256=row["client_cert_sha256"],
            allowed_cidrs=as_networks(row["allowed_cidrs"]),
        )


async def reseal_access_secrets(conn: Connection, master_keys: MasterKeys) -> int:
    """Every API and webhook secret re-sealed under the first of ``master_keys`` (the caller
    holds the transaction). Returns how many blobs were re-sealed."""
    count = 0
    rows = await conn.fetch(
        "SELECT key_id, secret_sealed, webhook_secret_sealed FROM api_keys FOR UPDATE"
    )
    for row in rows:
        webhook = row["webhook_secret_sealed"]
        await conn.execute(
            "UPDATE api_keys SET secret_sealed = $2, webhook_secret_sealed = $3 WHERE key_id = $1",
            row["key_id"],
            seal(unseal(bytes(row["secret_sealed"]), master_keys), master_keys),
            None if webhook is None else seal(unseal(bytes(webhook), master_keys), master_keys),
        )
        count += 1 if webhook is None else 2
    retiring = await conn.fetch("SELECT id, secret_sealed FROM api_key_retiring_secrets FOR UPDATE")
    for row in retiring:
        await conn.execute(
            "UPDATE api_key_retiring_secrets SET secret_sealed = $2 WHERE id = $1",
            row["id"],
            seal(unseal(bytes(row["secret_sealed"]), master_keys), master_keys),
        )
        count += 1
    return count
