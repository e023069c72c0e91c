"""Data initialisation (资金导入), acceptance: 10,000 existing merchants and their balances
brought in by the operator's ``fundhub init import`` against real Postgres and the bank
simulator (its depository registers each merchant as an existing account).

The control totals match; every merchant ends ACTIVE with the depository's member number; the
ledger balances (the merchants' opening balances sum to minus the equity account); a second run
of both files changes nothing; a file with a wrong trailer is refused whole and changes nothing;
a row that differs from what is held is reported and not applied."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.env import BIN, ModuleEnv
from support.init_files import balances_file, merchants_file
from support.ledger import assert_ledger_invariants
from support.platform import bank_simulator
from support.processes import Service, free_port, running
from support.snapshot import snapshot

from fundhub.common.topics import topics
from fundhub.merchants.depository_http import HttpDepository
from fundhub.merchants.poller import Poller
from fundhub.merchants.submitter import Submitter
from fundhub.reconciliation.initialisation.plan import equity_account

N = 10_000
EQUITY = equity_account("CNY")
EXIT_REFUSED = 1
EXIT_NEEDS_OPERATOR = 3


@pytest.fixture(scope="module")
async def bank(env: ModuleEnv) -> AsyncIterator[Service]:
    async with running(bank_simulator(env, "http://127.0.0.1:9")) as service:
        yield service


@pytest.fixture(scope="module")
def owner(env: ModuleEnv) -> str:
    key_id, _ = env.create_api_key("merchants:write,merchants:read", "*")
    return key_id


async def fundhub(
    env: ModuleEnv, bank: Service, *args: str, expect: int = 0
) -> tuple[dict[str, Any], float]:
    """The operator's command with ``--json``: its JSON and the seconds it took."""
    started = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "fundhub"), *args, "--json"],
        env=env.environ(FUNDHUB_BANK_BASE_URL=bank.url, FUNDHUB_BANK_APP_ID=env.app_id),
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - started
    assert done.returncode == expect, f"exit {done.returncode}: {done.stderr[-3000:]}{done.stdout}"
    return json.loads(done.stdout), took


def write(env: ModuleEnv, name: str, data: bytes) -> str:
    path: Path = env.tmp / name
    path.write_bytes(data)
    return str(path)


async def counts(env: ModuleEnv, owner: str) -> dict[str, int]:
    row = await env.pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM merchants WHERE owner_key_id = $1) AS merchants,
               (SELECT count(*) FROM merchants WHERE owner_key_id = $1 AND state = 'ACTIVE'
                  AND member_no IS NOT NULL AND approved_version = 1) AS active,
               (SELECT count(*) FROM merchant_requests r JOIN merchants m USING (merchant_id)
                WHERE m.owner_key_id = $1 AND r.kind = 'REGISTER' AND r.state = 'DONE'
                  AND r.outcome = 'SUCCESS') AS registered,
               (SELECT count(*) FROM init_opening_balances WHERE owner_key_id = $1) AS openings
        """,
        owner,
    )
    assert row is not None
    return dict(row)


async def ledger_sums(env: ModuleEnv, owner: str) -> tuple[int, int]:
    """(the owner's merchants' available, the equity account's postings)."""
    merchants = await env.pool.fetchval(
        "SELECT coalesce(sum(b.available), 0) FROM account_balances b"
        " JOIN merchants m USING (account_id) WHERE m.owner_key_id = $1",
        owner,
    )
    equity = await env.pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", EQUITY
    )
    return merchants, equity


async def test_ten_thousand_merchants_with_their_balances(
    env: ModuleEnv, bank: Service, owner: str
) -> None:
    merchant_nos = [f"INIT{i:05d}" for i in range(N)]
    rng = random.Random(11)
    amounts = [
        (no, rng.choice([0, rng.randint(1, 99), rng.randint(100, 10**9)])) for no in merchant_nos
    ]
    total = sum(fen for _, fen in amounts)
    merchants_csv = write(env, "merchants.csv", merchants_file(merchant_nos))
    balances_csv = write(env, "balances.csv", balances_file(amounts))

    # A dry run plans and changes nothing.
    before = await snapshot(env)
    planned, _ = await fundhub(
        env, bank, "init", "import", "merchants", merchants_csv, "--owner", owner, "--dry-run"
    )
    assert (planned["dryRun"], planned["rows"], planned["created"]) == (True, N, N)
    assert (await snapshot(env)).changes(before) == []

    imported, merchants_s = await fundhub(
        env, bank, "init", "import", "merchants", merchants_csv, "--owner", owner
    )
    assert (imported["rows"], imported["created"], imported["registered"]) == (N, N, N)
    assert imported["conflicts"] == imported["rejected"] == imported["unanswered"] == []
    assert await counts(env, owner) == {
        "merchants": N, "active": N, "registered": N, "openings": 0,
    }  # fmt: skip

    planned, _ = await fundhub(
        env, bank, "init", "import", "balances", balances_csv, "--owner", owner, "--dry-run"
    )
    assert (planned["dryRun"], planned["booked"], planned["bookedAmount"]) == (True, N, total)
    assert (await counts(env, owner))["openings"] == 0

    booked, balances_s = await fundhub(
        env, bank, "init", "import", "balances", balances_csv, "--owner", owner
    )
    assert (booked["rows"], booked["amount"], booked["booked"], booked["bookedAmount"]) == (
        N,
        total,
        N,
        total,
    )
    assert booked["equityAccount"] == EQUITY
    assert (await counts(env, owner))["openings"] == N
    assert await ledger_sums(env, owner) == (total, -total)
    await assert_ledger_invariants(env.pool)
    print(
        f"\n10,000 merchants: {merchants_s:.1f} s (the command; inside: {imported['secondsAt']},"
        f" done at {imported['seconds']} s); their balances: {balances_s:.1f} s"
        f" (inside {booked['seconds']} s)"
    )

    # A second run of both changes nothing.
    settled = await snapshot(env)
    again, _ = await fundhub(
        env, bank, "init", "import", "merchants", merchants_csv, "--owner", owner
    )
    assert (again["created"], again["unchanged"], again["registered"]) == (0, N, 0)
    rebooked, _ = await fundhub(
        env, bank, "init", "import", "balances", balances_csv, "--owner", owner
    )
    assert (rebooked["booked"], rebooked["unchanged"], rebooked["conflicts"]) == (0, N, [])
    assert (await snapshot(env)).changes(settled) == []

    # A wrong trailer refuses the file whole: a sum one fen off, a count one row off.
    off_by_a_fen = write(env, "balances-bad.csv", balances_file(amounts, total=total + 1))
    refused, _ = await fundhub(
        env, bank, "init", "import", "balances", off_by_a_fen, "--owner", owner,
        expect=EXIT_REFUSED,
    )  # fmt: skip
    assert refused["refused"] is True and refused["problemCount"] == 1
    assert refused["problems"][0]["line"] == N + 2
    more = [f"LATE{i:04d}" for i in range(500)]
    short = write(env, "merchants-bad.csv", merchants_file(more, count=499))
    refused, _ = await fundhub(
        env, bank, "init", "import", "merchants", short, "--owner", owner, expect=EXIT_REFUSED
    )
    assert refused["problems"][0]["field"] == "TRAILER"
    assert (await snapshot(env)).changes(settled) == []
    assert await ledger_sums(env, owner) == (total, -total)

    assert merchants_s < 120 and balances_s < 60, (merchants_s, balances_s)


async def test_changed_rows_are_reported_not_applied(env: ModuleEnv, bank: Service) -> None:
    key_id, _ = env.create_api_key("merchants:write", "*")
    first = write(env, "small.csv", merchants_file(["C1", "C2", "C3"], names={"C3": "REJECT me"}))
    done, _ = await fundhub(
        env, bank, "init", "import", "merchants", first, "--owner", key_id,
        expect=EXIT_NEEDS_OPERATOR,
    )  # fmt: skip
    assert (done["created"], done["registered"]) == (3, 2)
    assert [(r["line"], r["merchantNo"]) for r in done["rejected"]] == [(4, "C3")]
    state = await env.pool.fetchval(
        "SELECT state FROM merchants WHERE owner_key_id = $1 AND merchant_no = 'C3'", key_id
    )
    assert state == "REJECTED"

    # C2 renamed in the platform's books: reported with its line, the held merchant untouched.
    renamed = write(env, "renamed.csv", merchants_file(["C1", "C2"], names={"C2": "Renamed"}))
    before = await snapshot(env)
    again, _ = await fundhub(
        env, bank, "init", "import", "merchants", renamed, "--owner", key_id,
        expect=EXIT_NEEDS_OPERATOR,
    )  # fmt: skip
    assert (again["created"], again["unchanged"]) == (0, 1)
    assert [(c["line"], c["merchantNo"]) for c in again["conflicts"]] == [(3, "C2")]
    assert (await snapshot(env)).changes(before) == []

    # Balances: a REJECTED merchant or an unknown one refuses the file; a changed amount is
    # reported, not booked.
    for bad in ([("C1", 100), ("C3", 100)], [("C1", 100), ("NOPE", 100)]):
        path = write(env, "bad-balances.csv", balances_file(bad))
        refused, _ = await fundhub(
            env, bank, "init", "import", "balances", path, "--owner", key_id,
            expect=EXIT_REFUSED,
        )  # fmt: skip
        assert refused["problems"][0]["line"] == 3
    assert (await snapshot(env)).changes(before) == []
    ok = write(env, "ok.csv", balances_file([("C1", 100), ("C2", 250)]))
    booked, _ = await fundhub(env, bank, "init", "import", "balances", ok, "--owner", key_id)
    assert (booked["booked"], booked["bookedAmount"]) == (2, 350)
    changed = write(env, "changed.csv", balances_file([("C1", 100), ("C2", 999)]))
    settled = await snapshot(env)
    again, _ = await fundhub(
        env, bank, "init", "import", "balances", changed, "--owner", key_id,
        expect=EXIT_NEEDS_OPERATOR,
    )  # fmt: skip
    assert (again["booked"], again["unchanged"]) == (0, 1)
    assert [(c["line"], c["merchantNo"]) for c in again["conflicts"]] == [(3, "C2")]
    assert (await snapshot(env)).changes(settled) == []
    await assert_ledger_invariants(env.pool)


async def test_an_unknown_owner_is_refused(env: ModuleEnv, bank: Service) -> None:
    path = write(env, "one.csv", merchants_file(["X1"]))
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "fundhub"), "init", "import", "merchants", path, "--owner", "ak_nobody"],
        env=env.environ(FUNDHUB_BANK_BASE_URL=bank.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no such API key" in done.stderr


async def test_a_run_the_bank_never_answered_is_finished_by_running_it_again(
    env: ModuleEnv, bank: Service
) -> None:
    key_id, _ = env.create_api_key("merchants:write", "*")
    path = write(env, "away.csv", merchants_file(["R0", "R1", "R2", "R3"]))
    away = Service(env, "no-bank", "true", free_port())  # nothing listens on its port
    first, _ = await fundhub(
        env, away, "init", "import", "merchants", path, "--owner", key_id, "--concurrency", "3",
        expect=EXIT_NEEDS_OPERATOR,
    )  # fmt: skip
    assert (first["created"], first["registered"]) == (4, 0)
    assert [u["merchantNo"] for u in first["unanswered"]] == ["R0", "R1", "R2", "R3"]
    pending = await env.pool.fetch(
        "SELECT m.state, r.state AS request FROM merchants m JOIN merchant_requests r"
        " USING (merchant_id) WHERE m.owner_key_id = $1",
        key_id,
    )
    assert {(r["state"], r["request"]) for r in pending} == {("PENDING_REVIEW", "QUEUED")}

    # payment-worker's poller takes up a REGISTER nobody finished (R0's hour is made to pass).
    await env.pool.execute(
        "UPDATE merchant_requests r SET next_poll_at = now() FROM merchants m"
        " WHERE m.merchant_id = r.merchant_id AND m.merchant_no = 'R0' AND m.owner_key_id = $1",
        key_id,
    )
    async with aiohttp.ClientSession() as session:
        depository = HttpDepository(session, bank.url)
        submitter = Submitter(
            env.pool, topics(env.settings), depository, env.settings.bank_callback_url()
        )
        assert await Poller(env.settings, env.pool, submitter).poll_once() == 1
    assert (await counts(env, key_id))["active"] == 1

    again, _ = await fundhub(env, bank, "init", "import", "merchants", path, "--owner", key_id)
    assert (again["created"], again["unchanged"], again["resumed"]) == (0, 1, 3)
    assert again["registered"] == 3
    assert (await counts(env, key_id))["active"] == 4
    last, _ = await fundhub(env, bank, "init", "import", "merchants", path, "--owner", key_id)
    assert (last["unchanged"], last["resumed"], last["registered"]) == (4, 0, 0)


async def test_two_imports_for_one_owner_are_not_run_at_once(env: ModuleEnv, bank: Service) -> None:
    key_id, _ = env.create_api_key("merchants:write", "*")
    path = write(env, "locked.csv", merchants_file(["L1"]))
    async with env.pool.acquire() as conn:  # as an import running for the owner holds it
        await conn.execute(
            "SELECT pg_advisory_lock(hashtextextended('fundhub:init:' || $1, 0))", key_id
        )
        try:
            done = await asyncio.to_thread(
                subprocess.run,
                [str(BIN / "fundhub"), "init", "import", "merchants", path, "--owner", key_id],
                env=env.environ(FUNDHUB_BANK_BASE_URL=bank.url),
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended('fundhub:init:' || $1, 0))", key_id
            )
    assert done.returncode == EXIT_REFUSED and "another import" in done.stderr
    assert (await counts(env, key_id))["merchants"] == 0
