"""The shared count in Postgres (``rate_limit_take``) does what the pure GCRA says."""

from __future__ import annotations

import pytest
from support.env import ModuleEnv

from fundhub.access.limit_store import clear_key_limits, key_limits, set_key_limits, take
from fundhub.access.limits import Rate, gcra


async def test_the_store_counts_like_the_pure_gcra(env: ModuleEnv) -> None:
    rate = Rate(5, 60.0)  # slow enough that no token comes back during the test
    answers = await take(env.pool, [("a", rate, 1)] * 8 + [("b", rate, 1)])
    assert [granted for granted, _ in answers] == [1] * 5 + [0] * 3 + [1]
    _, allowed, wait = gcra(None, 0.0, rate, count=6)
    assert allowed == 5
    assert answers[5][1] == pytest.approx(wait, abs=0.5)  # one token: 12 s, less time elapsed
    # Leases: several tokens per request, first come first served.
    leases = await take(env.pool, [("c", rate, 3), ("c", rate, 3), ("c", rate, 3)])
    assert [granted for granted, _ in leases] == [3, 2, 0]
    assert leases[0][1] == 0.0 and leases[1][1] > 0 and leases[2][1] > 0
    # Nothing refused was counted: the bucket still admits exactly when its time comes.
    assert (await take(env.pool, [("a", rate, 1)]))[0][0] == 0


async def test_a_keys_limits_are_set_and_cleared(env: ModuleEnv) -> None:
    key_id, _ = env.create_api_key("balance:read", "*")
    async with env.pool.acquire() as conn:
        assert await set_key_limits(conn, key_id, {"read": Rate(7, 1.0)})
        assert not await set_key_limits(conn, "ak_missing", {"read": Rate(7, 1.0)})
        assert await key_limits(env.pool, key_id) == {"read": Rate(7, 1.0)}
        await clear_key_limits(conn, key_id)
    assert await key_limits(env.pool, key_id) == {}
