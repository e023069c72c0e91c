"""PostgreSQL access: the pool and the migration runner (migrations live in ``migrations/``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x66756E64  # "fund": one migrator at a time across replicas


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) in order; the version is the file name without ``.sql``."""
    folder = resources.files("fundhub.common") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(n.removesuffix(".sql"), (folder / n).read_text(encoding="utf-8")) for n in names]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the versions applied."""
    conn = await connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("migration_applied", version=version)
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        value: Any = await pool.fetchval("SELECT 1", timeout=2)
    except Exception:
        return False
    return bool(value == 1)


class BatchInsert:
    """``INSERT ... SELECT FROM unnest(...)``: a whole batch in one statement and one round trip.

    ``columns`` are (name, Postgres type). jsonb travels as text and is cast in the statement,
    because a JSON array value would otherwise read as one more array dimension.
    """

    def __init__(self, table: str, columns: Sequence[tuple[str, str]], suffix: str = "") -> None:
        self.width = len(columns)
        self._json = [i for i, (_, kind) in enumerate(columns) if kind == "jsonb"]
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(
            f"${i}::{'text' if kind == 'jsonb' else kind}[]"
            for i, (_, kind) in enumerate(columns, start=1)
        )
        selected = ", ".join(
            f"c{i}::jsonb" if kind == "jsonb" else f"c{i}" for i, (_, kind) in enumerate(columns)
        )
        aliases = ", ".join(f"c{i}" for i in range(len(columns)))
        self.sql = (
            f"INSERT INTO {table} ({names}) SELECT {selected} "
            f"FROM unnest({arrays}) AS u({aliases}) {suffix}"
        ).rstrip()

    async def run(self, conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        arrays = [[row[i] for row in rows] for i in range(self.width)]
        for i in self._json:
            arrays[i] = [
                None if v is None else json.dumps(v, ensure_ascii=False) for v in arrays[i]
            ]
        await conn.execute(self.sql, *arrays)
