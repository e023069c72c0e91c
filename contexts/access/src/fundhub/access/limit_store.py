"""Rate limits in Postgres: each key's configured limits, and the shared buckets every gateway
replica counts in (``rate_limit_take``, migration 0008)."""

from __future__ import annotations

from fundhub.access.limits import Rate
from fundhub.common.db import Connection, Pool

TAKE = "SELECT rate_limit_take($1, $2, $3)"


async def take(pool: Pool, bucket: str, rate: Rate) -> float:
    """Count one request in ``bucket``: 0.0 when it may pass, else the seconds to wait."""
    wait = await pool.fetchval(TAKE, bucket, rate.interval_s, rate.period_s)
    return float(wait)


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
