"""The gateway's key cache hears of every change, and stays safe when it cannot hear."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from support.env import ModuleEnv

from fundhub.access.keys import LIVE, SANDBOX, new_api_key
from fundhub.access.store import ApiKeyStore, insert_api_key, revoke_api_key, rotate_secret


@pytest.fixture
async def store(env: ModuleEnv) -> AsyncIterator[ApiKeyStore]:
    keys = ApiKeyStore(
        env.pool, env.settings.master_keys(), SANDBOX, ttl_s=60.0, dsn=env.settings.database_url
    )
    keys.start()
    deadline = time.monotonic() + 10
    while not keys._listening:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    yield keys
    await keys.stop()


async def refused_within(store: ApiKeyStore, key_id: str, limit_s: float) -> float:
    started = time.monotonic()
    while await store.get(key_id) is not None:
        assert time.monotonic() - started < limit_s, "the revoked key is still served"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def add_key(env: ModuleEnv, environment: str = SANDBOX) -> str:
    key = new_api_key("store", "balance:read", "*", environment)  # type: ignore[arg-type]
    async with env.pool.acquire() as conn:
        await insert_api_key(conn, key, env.settings.master_keys())
    return key.key_id


async def test_a_revocation_drops_the_cached_key_at_once(
    env: ModuleEnv, store: ApiKeyStore
) -> None:
    key_id = await add_key(env)
    assert await store.get(key_id) is not None  # cached for 60 s
    async with env.pool.acquire() as conn:
        await revoke_api_key(conn, key_id)
    assert await refused_within(store, key_id, 1.0) < 1.0


async def test_a_rotation_is_seen_at_once(env: ModuleEnv, store: ApiKeyStore) -> None:
    key_id = await add_key(env)
    before = await store.get(key_id)
    assert before is not None and before.retiring == ()
    async with env.pool.acquire() as conn:
        secret, _ = await rotate_secret(
            conn, key_id, "api", timedelta(hours=1), env.settings.master_keys()
        )
    deadline = time.monotonic() + 1
    while (after := await store.get(key_id)) is None or after.secret != secret:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert [r.secret for r in after.retiring] == [before.secret]


async def test_a_key_of_the_other_environment_is_not_served(
    env: ModuleEnv, store: ApiKeyStore
) -> None:
    assert await store.get(await add_key(env, LIVE)) is None


async def test_while_the_listener_is_cut_off_keys_are_trusted_a_second_at_most(
    env: ModuleEnv, store: ApiKeyStore
) -> None:
    key_id = await add_key(env)
    assert await store.get(key_id) is not None
    # Cut the listening connection (our own test database's backend, nothing else).
    cut = await env.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    assert cut == 1
    async with env.pool.acquire() as conn:
        # Revoked with nobody listening: the trigger's notice is lost.
        await conn.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
        try:
            await revoke_api_key(conn, key_id)
        finally:
            await conn.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")
    assert await refused_within(store, key_id, 1.5) < 1.5
