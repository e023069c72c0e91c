"""PostgreSQL access: pools, JSON codecs, and batch statements (one round trip for a batch)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

# A process on its way out waits this long for its connections to come back to the pool.
CLOSE_TIMEOUT_S = 5.0

# What every module annotates with: a pool, a connection whether held alone or lent by the pool
# (asyncpg lends a proxy with the same methods), one lent (what ``Pool.release`` takes back), and
# a row (asyncpg's Record reads like a mapping; dicts built from rows stand in for it).
Pool: TypeAlias = asyncpg.Pool
Lent: TypeAlias = PoolConnectionProxy
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Row: TypeAlias = asyncpg.Record | Mapping[str, Any]


def json_text(value: Any) -> str:
    """JSON for a json/jsonb parameter: orjson, or the standard library for what orjson cannot
    write (an integer beyond 64 bits, a non-string key), so no value is ever refused here."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def json_value(text: str) -> Any:
    """A json/jsonb column's value, read by the standard library: orjson, faster, reads an
    integer beyond 64 bits as a float, and a client's extension must read back as it was sent."""
    return json.loads(text)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json_text, decoder=json_value, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json_text, decoder=json_value, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Released connections keep their session: nothing here sets any session state.

    asyncpg still rolls back an open transaction and drops listener callbacks before calling
    this; what it no longer does is send ``RESET ALL; UNLISTEN *; ...`` to the server on every
    release, a round trip per pool use that cost more than many of the statements themselves.
    The migrator's advisory lock is taken on its own connection (``connect``), never a pooled one.
    """


async def connect_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def close_pool(pool: Pool, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close the pool, but never wait past ``timeout_s``.

    ``Pool.close`` waits until every connection is released. After the server restarted, the
    relays' listening connections stayed "in use" for good (now given back by
    ``common.listening``), and notify-ingest and payment-worker sat out their whole stop
    deadline; any other connection a bug keeps taken would do the same, so the wait stays
    bounded. Past the timeout the rest are terminated."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except TimeoutError:
        log.warning("pool_close_abandoned", timeout_s=timeout_s)
        pool.terminate()


async def connect(dsn: str) -> Connection:
    conn: Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def ping(pool: Pool) -> bool:
    try:
        value: Any = await pool.fetchval("SELECT 1", timeout=2)
    except Exception:
        return False
    return bool(value == 1)


_PARAM = re.compile(r"\$(\d+)")


class ArrayStatement:
    """A statement over per-column arrays (``unnest``), so a whole batch is one statement.

    jsonb columns travel as text and are cast in SQL: a JSON array value would otherwise read
    as one more array dimension. Statements can be run alone or fused by ``write_together``.
    """

    def __init__(self, sql: str, kinds: Sequence[str]) -> None:
        self.sql = sql
        self.width = len(kinds)
        self._json = [i for i, kind in enumerate(kinds) if kind == "jsonb"]

    def arrays(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        arrays = [[row[i] for row in rows] for i in range(self.width)]
        for i in self._json:
            arrays[i] = [None if v is None else json_text(v) for v in arrays[i]]
        return arrays

    def renumbered(self, offset: int) -> str:
        return _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", self.sql)

    async def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await conn.execute(self.sql, *self.arrays(rows))


class BatchInsert(ArrayStatement):
    """``INSERT ... SELECT FROM unnest(...)`` for (name, Postgres type) columns."""

    def __init__(self, table: str, columns: Sequence[tuple[str, str]], suffix: str = "") -> None:
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(
            f"${i}::{'text' if kind == 'jsonb' else kind}[]"
            for i, (_, kind) in enumerate(columns, start=1)
        )
        selected = ", ".join(
            f"c{i}::jsonb" if kind == "jsonb" else f"c{i}" for i, (_, kind) in enumerate(columns)
        )
        aliases = ", ".join(f"c{i}" for i in range(len(columns)))
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {selected} "
            f"FROM unnest({arrays}) AS u({aliases}) {suffix}"
        ).rstrip()
        super().__init__(sql, [kind for _, kind in columns])


Write = tuple[ArrayStatement, Sequence[Sequence[Any]]]


async def write_together(
    conn: Connection, writes: Sequence[Write], notify: str | None = None
) -> None:
    """Run several batch writes as one statement (data-modifying CTEs): one round trip.

    Foreign keys between the parts hold: they are checked at the end of the statement.
    """
    parts: list[str] = []
    args: list[Any] = []
    for statement, rows in writes:
        if not rows:
            continue
        parts.append(f"w{len(parts)} AS ({statement.renumbered(len(args))})")
        args.extend(statement.arrays(rows))
    if not parts:
        return
    final = f"SELECT pg_notify('{notify}', '')" if notify else "SELECT 1"
    await conn.execute(f"WITH {', '.join(parts)} {final}", *args)


@dataclass(frozen=True)
class Step:
    """One statement of ``run_together``: a data-modifying statement or a locking SELECT."""

    sql: str  # parameters $1.. of its own
    args: Sequence[Any]
    returns: bool = True


async def run_together(conn: Connection, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
    """Run several statements as one (top-level CTEs): one round trip instead of one each.

    Each step's rows come back as dicts (through JSON, so numbers are ints and timestamps are
    ISO strings). Every step sees the snapshot the statement started with, not the others'
    effects; a step that must see another's work belongs in a later round trip.
    """
    parts: list[str] = []
    args: list[Any] = []
    for i, step in enumerate(steps):
        sql = _PARAM.sub(lambda m: f"${int(m.group(1)) + len(args)}", step.sql)
        parts.append(f"s{i} AS ({sql})")
        args.extend(step.args)
    collected = ", ".join(
        f"(SELECT coalesce(json_agg(s{i}), '[]'::json) FROM s{i})" if step.returns else "NULL"
        for i, step in enumerate(steps)
    )
    row = await conn.fetchrow(f"WITH {', '.join(parts)} SELECT {collected}", *args)
    assert row is not None
    return [_rows(row[i]) if step.returns else [] for i, step in enumerate(steps)]


def _rows(value: Any) -> list[dict[str, Any]]:
    return json.loads(value) if isinstance(value, str) else list(value)
