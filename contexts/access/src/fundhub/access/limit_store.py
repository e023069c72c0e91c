"""Rate limits in Postgres: each key's configured limits, and the shared buckets every gateway
replica counts in (``rate_limit_take``, migration 0008)."""

from __future__ import annotations

from collections.abc import Sequence

from fundhub.access.limits import Rate, share_out
from fundhub.common.db import Connection, Pool

TAKE = "SELECT allowed, waits FROM rate_limit_take($1, $2, $3, $4)"


async def take(pool: Pool, requests: Sequence[tuple[str, Rate, int]]) -> list[tuple[int, float]]:
    """Count requests for tokens (bucket, rate, how many), in order, in one statement: per
    request the tokens granted and, when fewer than asked, the seconds until the next one."""
    positions: dict[str, list[int]] = {}  # bucket -> positions in ``requests``
    rates: dict[str, Rate] = {}
    for position, (bucket, rate, _) in enumerate(requests):
        positions.setdefault(bucket, []).append(position)
        rates.setdefault(bucket, rate)
    buckets = sorted(positions)  # one lock order for every replica: no deadlock
    row = await pool.fetchrow(
        TAKE,
        buckets,
        [sum(requests[p][2] for p in positions[b]) for b in buckets],
        [rates[b].interval_s for b in buckets],
        [rates[b].period_s for b in buckets],
    )
    assert row is not None
    answers: list[tuple[int, float]] = [(0, 0.0)] * len(requests)
    for bucket, allowed, wait in zip(buckets, row["allowed"], row["waits"], strict=True):
        asked = [requests[p][2] for p in positions[bucket]]
        for p, want, got in zip(positions[bucket], asked, share_out(asked, allowed), strict=True):
            answers[p] = (got, float(wait) if got < want else 0.0)
    return answers


async def key_limits(pool: Pool, key_id: str) -> dict[str, Rate]:
    """The key's own limits by route class; a class absent here takes the gateway's default."""
    rows = await pool.fetch(
        "SELECT route_class, max_requests, period_s FROM api_key_rate_limits WHERE key_id = $1",
        key_id,
    )
    return {r["route_class"]: Rate(r["max_requests"], r["period_s"]) for r in rows}


async def set_key_limits(conn: Connection, key_id: str, limits: dict[str, Rate]) -> bool:
    """Set (or replace) the key's limits for the classes given; False when there is no such key."""
    if await conn.fetchval("SELECT 1 FROM api_keys WHERE key_id = $1", key_id) is None:
        return False
    await conn.executemany(
        "INSERT INTO api_key_rate_limits (key_id, route_class, max_requests, period_s)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (key_id, route_class)"
        " DO UPDATE SET max_requests = EXCLUDED.max_requests, period_s = EXCLUDED.period_s",
        [(key_id, name, rate.limit, rate.period_s) for name, rate in limits.items()],
    )
    return True


async def clear_key_limits(conn: Connection, key_id: str) -> None:
    """Back to the gateway's defaults."""
    await conn.execute("DELETE FROM api_key_rate_limits WHERE key_id = $1", key_id)


async def purge_buckets(pool: Pool, idle_s: float) -> int:
    """A bucket whose time is past is as good as absent (its caller has its whole limit back)."""
    result = await pool.execute(
        "DELETE FROM rate_limit_buckets WHERE tat < extract(epoch FROM clock_timestamp()) - $1",
        idle_s,
    )
    return int(result.split()[-1])
