"""Migrations you can trust: every context's, in one order, each checked against its checksum."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from support.env import BIN, ModuleEnv, database_url, drop_database
from support.processes import notify_ingest

from fundhub.common.config import Settings
from fundhub.common.migrations import (
    Migration,
    MigrationError,
    check_applied,
    discover,
    migrate,
    ordered,
    verify,
)

CONTEXTS = ["common", "access", "ledger", "bank_transfers", "payouts", "webhooks", "audit"]
# Seed 003's contexts come after those (their tables reference the ledger and the payouts).
LATER_CONTEXTS = {"merchants", "channels", "orders", "settlement", "reconciliation"}


@pytest.fixture
async def blank_db(infra: Settings) -> AsyncIterator[str]:
    name = f"fundhub_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(infra.database_url, name)
    finally:
        await drop_database(admin, name)
        await admin.close()


def test_every_context_brings_its_migrations_in_one_order() -> None:
    found = discover()
    # The first migration of each context, in the order their tables depend on each other.
    in_order = list(dict.fromkeys(m.context for m in found))
    assert in_order[: len(CONTEXTS)] == CONTEXTS
    assert set(in_order[len(CONTEXTS) :]) <= LATER_CONTEXTS
    assert [m.version[:4] for m in found] == sorted(m.version[:4] for m in found)


def test_a_number_claimed_twice_is_refused() -> None:
    a = Migration("0007_a", "one", "SELECT 1")
    b = Migration("0007_b", "two", "SELECT 2")
    with pytest.raises(MigrationError, match="0007 is used twice"):
        ordered([a, b])


def test_an_edited_or_vanished_migration_is_refused() -> None:
    known = [Migration("0001_a", "x", "SELECT 1"), Migration("0002_b", "x", "SELECT 2")]
    applied = {m.version: m.checksum for m in known}
    assert check_applied(applied, known) == []
    assert check_applied({"0001_a": known[0].checksum}, known) == [known[1]]
    edited = [known[0], replace(known[1], sql="SELECT 3")]
    with pytest.raises(MigrationError, match="0002_b was edited after it was applied"):
        check_applied(applied, edited)
    with pytest.raises(MigrationError, match="0002_b is applied"):
        check_applied(applied, known[:1])


async def test_migrate_applies_once_and_refuses_drift(blank_db: str) -> None:
    applied = await migrate(blank_db)
    assert [v[:4] for v in applied] == [m.version[:4] for m in discover()]
    assert [v[:4] for v in applied][:6] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert await migrate(blank_db) == []
    await verify(blank_db)

    edited = [
        replace(m, sql=m.sql + "\n-- edited") if m.context == "ledger" else m for m in discover()
    ]
    with pytest.raises(MigrationError, match="ledger/0003_ledger was edited"):
        await migrate(blank_db, edited)
    with pytest.raises(MigrationError, match="edited"):
        await verify(blank_db, edited)


async def test_a_schema_behind_the_code_is_refused(blank_db: str) -> None:
    known = discover()
    await migrate(blank_db, known[:-1])
    last = known[-1]
    with pytest.raises(MigrationError, match=rf"behind the code .*{last.context}/{last.version}"):
        await verify(blank_db, known)


async def test_a_database_of_the_old_layout_is_refused(blank_db: str) -> None:
    conn = await asyncpg.connect(blank_db)
    await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
    await conn.execute("INSERT INTO schema_migrations VALUES ('0001_foundation')")
    await conn.close()
    with pytest.raises(MigrationError, match="older fundhub"):
        await migrate(blank_db)


def fundhub_migrate(env: ModuleEnv) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "fundhub"), "migrate"]
    return subprocess.run(command, env=env.environ(), capture_output=True, text=True, timeout=60)


async def test_services_and_the_cli_refuse_a_drifted_schema(env: ModuleEnv) -> None:
    """An applied migration whose checksum no longer matches its file: nothing starts."""
    await env.pool.execute(
        "UPDATE schema_migrations SET checksum = 'tampered' WHERE version = '0003_ledger'"
    )
    try:
        done = fundhub_migrate(env)
        assert done.returncode == 1
        assert "ledger/0003_ledger was edited after it was applied" in done.stderr
        service = notify_ingest(env)
        service.start()
        assert service.proc is not None
        assert service.proc.wait(timeout=60) != 0
        assert "was edited after it was applied" in service.tail(60)
    finally:
        await env.pool.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = '0003_ledger'",
            next(m.checksum for m in discover() if m.version == "0003_ledger"),
        )
