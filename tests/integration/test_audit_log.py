"""The audit log in PostgreSQL: the chain appended, verified by `fundhub audit verify` (which
finds an edited, an inserted and a deleted entry), archived month by month, and the operator's
commands audited. Real Postgres; the CLI as an operator runs it."""

from __future__ import annotations

import gzip
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.env import BIN, ModuleEnv

from fundhub.audit.entry import AuditEntry
from fundhub.audit.store import append

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _entry(n: int, actor: str = "ak_test", at: datetime | None = None) -> AuditEntry:
    return AuditEntry(
        id=f"entry-{n}",
        at=at or datetime.now(UTC),
        kind="http",
        actor=actor,
        source="10.0.0.1",
        route="GET /v1/accounts/{accountId}/balance",
        params={"path": f"/v1/accounts/A{n}/balance"},
        status=200,
        error_code=None,
        latency_ms=1.0,
        correlation_id=f"corr-{n}",
    )


def _cli(env: ModuleEnv, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fundhub"), *args],
        env=env.environ(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _verify(env: ModuleEnv) -> dict[str, object]:
    done = _cli(env, "audit", "verify", "--json")
    report: dict[str, object] = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1)
    return report


async def _append(env: ModuleEnv, entries: list[AuditEntry], **kw: datetime) -> None:
    async with env.pool.acquire() as conn, conn.transaction():
        await append(conn, entries, **kw)


async def test_old_months_are_archived_and_the_chain_stays_verifiable(
    env: ModuleEnv, tmp_path: Path
) -> None:
    old = datetime(2020, 1, 15, tzinfo=UTC)
    await _append(env, [_entry(n, at=old) for n in range(1, 2501)], logged_at=old)
    await _append(env, [_entry(n) for n in range(2501, 2511)])
    assert _verify(env)["ok"]

    refused = _cli(
        env,
        "audit",
        "archive",
        "--before",
        datetime.now(UTC).strftime("%Y-%m"),
        "--to",
        str(tmp_path),
    )
    assert refused.returncode == 2 and "retention" in refused.stderr

    done = _cli(env, "audit", "archive", "--before", "2020-02", "--to", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2020-01: 2500 entries" in done.stderr  # the progress display
    archived = tmp_path / "audit-2020-01.jsonl.gz"
    lines = gzip.decompress(archived.read_bytes()).splitlines()
    assert len(lines) == 2500 and json.loads(lines[0])["entry"]["id"] == "entry-1"
    async with env.pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('audit_log_202001')") is None
        assert await conn.fetchval("SELECT min(seq) FROM audit_log") == 2501
    report = _verify(env)
    assert report["ok"], report  # continues from the archived last hash
    again = _cli(env, "audit", "archive", "--before", "2020-02", "--to", str(tmp_path), "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == []


async def test_rows_cannot_be_updated_or_deleted(env: ModuleEnv) -> None:
    await _append(env, [_entry(3000)])
    async with env.pool.acquire() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute("UPDATE audit_log SET status = 500")
        with pytest.raises(Exception, match="append-only"):
            await conn.execute("DELETE FROM audit_log")


class _Tamperer:
    """What an owner of the tables could do: the append-only trigger switched off."""

    def __init__(self, env: ModuleEnv) -> None:
        self.env = env

    async def sql(self, statement: str, *args: object) -> None:
        async with self.env.pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            await conn.execute(statement, *args)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


async def _middle_seq(env: ModuleEnv) -> int:
    """An entry of the test's own, neither first nor last."""
    async with env.pool.acquire() as conn:
        seq = await conn.fetchval(
            "SELECT seq FROM audit_log WHERE actor = 'ak_test' ORDER BY seq DESC OFFSET 3 LIMIT 1"
        )
    return int(seq)


async def test_verify_finds_an_edited_entry(env: ModuleEnv) -> None:
    await _append(env, [_entry(n) for n in range(4000, 4010)])
    seq = await _middle_seq(env)
    tamper = _Tamperer(env)
    await tamper.sql(
        "UPDATE audit_log SET body = convert_to(replace(convert_from(body, 'UTF8'),"
        " '\"status\":200', '\"status\":201'), 'UTF8') WHERE seq = $1",
        seq,
    )
    report = _verify(env)
    assert not report["ok"] and {p["seq"] for p in report["problems"]} == {seq}  # type: ignore[union-attr]
    await tamper.sql(
        "UPDATE audit_log SET body = convert_to(replace(convert_from(body, 'UTF8'),"
        " '\"status\":201', '\"status\":200'), 'UTF8') WHERE seq = $1",
        seq,
    )
    assert _verify(env)["ok"]


async def test_verify_finds_an_edited_query_column(env: ModuleEnv) -> None:
    seq = await _middle_seq(env)
    tamper = _Tamperer(env)
    await tamper.sql("UPDATE audit_log SET actor = 'ak_someone_else' WHERE seq = $1", seq)
    report = _verify(env)
    assert not report["ok"]
    await tamper.sql("UPDATE audit_log SET actor = 'ak_test' WHERE seq = $1", seq)
    assert _verify(env)["ok"]


async def test_verify_finds_a_deleted_entry(env: ModuleEnv) -> None:
    seq = await _middle_seq(env)
    async with env.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM audit_log WHERE seq = $1", seq)
    tamper = _Tamperer(env)
    await tamper.sql("DELETE FROM audit_log WHERE seq = $1", seq)
    report = _verify(env)
    assert not report["ok"] and any("missing" in p["reason"] for p in report["problems"])  # type: ignore[union-attr]
    columns = list(row.keys())
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await tamper.sql(
        f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({placeholders})", *row.values()
    )
    assert _verify(env)["ok"]


async def test_verify_finds_an_inserted_entry(env: ModuleEnv) -> None:
    seq = await _middle_seq(env)
    async with env.pool.acquire() as conn:
        row = dict(await conn.fetchrow("SELECT * FROM audit_log WHERE seq = $1", seq))
    tamper = _Tamperer(env)
    forged = {
        **row,
        "logged_at": row["logged_at"] + timedelta(microseconds=1),
        "body": row["body"].replace(b'"ak_test"', b'"ak_forged"'),
        "actor": "ak_forged",
    }
    columns = list(forged)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await tamper.sql(
        f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({placeholders})", *forged.values()
    )
    assert not _verify(env)["ok"]
    await tamper.sql("DELETE FROM audit_log WHERE actor = 'ak_forged'")
    assert _verify(env)["ok"]


async def test_verify_finds_a_deleted_last_entry(env: ModuleEnv) -> None:
    async with env.pool.acquire() as conn:
        last = await conn.fetchrow("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")
    tamper = _Tamperer(env)
    await tamper.sql("DELETE FROM audit_log WHERE seq = $1", last["seq"])
    assert not _verify(env)["ok"]
    columns = list(last.keys())
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await tamper.sql(
        f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({placeholders})", *last.values()
    )
    assert _verify(env)["ok"]


async def test_operator_commands_are_audited_without_their_secrets(env: ModuleEnv) -> None:
    key_id, secret = env.create_api_key("balance:read", "*")
    env.register_bank_app()
    listed = json.loads(env.cli("audit", "list", "--json", "--limit", "10"))
    routes = [e["route"] for e in listed]
    assert routes[:2] == ["fundhub bank-app add", "fundhub api-key create"]
    created = listed[1]
    assert created["kind"] == "operator" and created["actor"]
    assert created["params"]["keyId"] == key_id
    assert secret not in json.dumps(listed)
    mine = json.loads(env.cli("audit", "list", "--key", created["actor"], "--json"))
    assert {e["route"] for e in mine} >= {"fundhub api-key create", "fundhub bank-app add"}
    none = json.loads(
        env.cli("audit", "list", "--key", "ak_test", "--since", "2999-01-01", "--json")
    )
    assert none == []
    assert _verify(env)["ok"]


async def test_key_lifecycle_commands_are_audited_without_their_secrets(env: ModuleEnv) -> None:
    key_id, _ = env.create_api_key("balance:read", "*")
    rotated = json.loads(env.cli("api-key", "rotate", key_id, "--overlap", "1h", "--json"))
    env.cli("api-key", "rate-limit", key_id, "5/second")
    env.cli("api-key", "restrict", key_id, "--allow-cidrs", "10.0.0.0/8")
    env.cli("api-key", "revoke", key_id)
    listed = json.loads(env.cli("audit", "list", "--json", "--limit", "10"))
    routes = [e["route"] for e in listed]
    assert routes[:4] == [
        "fundhub api-key revoke",
        "fundhub api-key restrict",
        "fundhub api-key rate-limit",
        "fundhub api-key rotate",
    ]
    assert all(e["params"]["keyId"] == key_id for e in listed[:4])
    assert rotated["secret"] not in json.dumps(listed)
    assert _verify(env)["ok"]
