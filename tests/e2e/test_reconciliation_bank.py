"""Issue 11's acceptance, the bank's part: a day of the depository's activity through the
platform (gateway, notify-ingest, payment-worker, callback dispatcher) and the bank simulator as real processes
-- transfers in (the simulator's signed notifications), a supplier payout, two orders settled by
the depository's split (each receiver a member, the platform's fee its own member) and a
merchant's withdrawal -- then the bank's daily file fetched from the simulator's download API as
the reconciler fetches it: every line matched and every closing balance agreed, the merchants'
and the platform's included (the bank books a split under the member's id, a withdrawal under
the ledger account); then the same day's file issued again with one injected difference of every
class: exactly those, and each balance difference explained by them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from support.api import signed_headers
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.payout_load import payout_body
from support.processes import notify_ingest
from support.recon_results import balance_checks, current_run
from support.settlement_services import settlement_services
from support.settlement_world import Merchant, merchant, paid_order

from e2e.conftest import wait_until
from fundhub.channels.apps import ChannelAppStore
from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.reconciler.daily import fetch_day
from fundhub.reconciler.fetchers import download_fetcher
from fundhub.reconciliation.intake import take_file
from fundhub.reconciliation.matching import PLATFORM_MEMBER
from fundhub.reconciliation.statement import Source

SCOPES = "orders:write,orders:read,merchants:write,merchants:read,balance:read,payouts:write"
A1, A2 = "6222020000011001", "6222020000011002"  # the accounts transfers arrive in
TRANSFER = 100_000
PAYOUT = 30_000
WITHDRAWAL = 4_000


@dataclass
class BankDay:
    env: ModuleEnv
    http: httpx.AsyncClient
    bank_url: str
    key_id: str
    secret: str

    async def post(self, path: str, body: dict[str, Any] | bytes | None = None) -> httpx.Response:
        raw = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        for _ in range(5):  # 503: a dependency away for a moment; signed anew each time
            headers = signed_headers(self.key_id, self.secret, "POST", path, None, raw)
            headers["Content-Type"] = "application/json"
            answer = await self.http.post(path, content=raw, headers=headers)
            if answer.status_code != 503:
                return answer
            await asyncio.sleep(0.3)
        return answer


@pytest.fixture(scope="module")
async def bank_day(env: ModuleEnv) -> AsyncIterator[BankDay]:
    made = settlement_services(env)
    gw, sim = made.gateway, made.bank
    services = [gw, sim, notify_ingest(env), made.worker, made.dispatcher]
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        key = json.loads(
            env.cli("api-key", "create", "--name", "platform", "--scopes", SCOPES,
                    "--accounts", "*", "--json")
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            yield BankDay(env, http, sim.url, key["keyId"], key["secret"])
    finally:
        for service in reversed(services):
            service.stop()


async def _transfers_in(day: BankDay, prefix: str) -> list[str]:
    """Four transfers into A1 and A2, sent by the simulated bank as signed notifications."""
    started = await day.http.post(f"{day.bank_url}/scenarios/transfers", json={
        "count": 4, "accounts": [A1, A2], "minAmount": TRANSFER, "maxAmount": TRANSFER,
        "seed": 11, "recordPrefix": prefix, "concurrency": 2,
    })  # fmt: skip
    assert started.status_code == 202, started.text
    scenario = started.json()["scenarioId"]

    async def sent() -> bool:
        read = await day.http.get(f"{day.bank_url}/scenarios/{scenario}")
        return bool(read.json()["status"] == "done")

    await wait_until(sent, timeout_s=30)
    records = [f"{prefix}{n:08d}" for n in range(1, 5)]

    async def booked() -> bool:
        n = await day.env.pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id = ANY($1::text[]) "
            "AND state = 'AVAILABLE'",
            records,
        )
        return bool(n == len(records))

    await wait_until(booked, timeout_s=30)
    return records


async def _paid_out(day: BankDay, pay_id: str) -> None:
    async def final() -> bool:
        state = await day.env.pool.fetchval("SELECT state FROM payouts WHERE pay_id = $1", pay_id)
        return bool(state == "SUCCESS")

    await wait_until(final, timeout_s=30)


async def _settled(day: BankDay, receivers: list[tuple[Merchant, int]], fee: int) -> str:
    order = await paid_order(day.env.pool, day.key_id, receivers, platform_fee=fee)
    answer = await day.post(f"/v1/orders/{order.order_no}/settle")
    assert answer.status_code == 202, answer.text
    settlement_id: str = answer.json()["settlementId"]

    async def settled() -> bool:
        state = await day.env.pool.fetchval(
            "SELECT state FROM settlements WHERE settlement_id = $1", settlement_id
        )
        return bool(state == "SETTLED")

    await wait_until(settled, timeout_s=30)
    return settlement_id


async def test_a_bank_day_reconciles_clean_then_reports_each_injected_class(
    bank_day: BankDay,
) -> None:
    day = bank_day
    today = utcnow().astimezone(BANK_TZ).date()
    records = await _transfers_in(day, f"T{uuid.uuid4().hex[:8]}")
    payer = await day.env.pool.fetchval(
        "SELECT account_id FROM bank_transfer_records WHERE record_id = $1", records[0]
    )
    paid = await day.post("/v1/payouts", payout_body(f"req-{uuid.uuid4().hex}", payer, PAYOUT))
    assert paid.status_code in (200, 202), paid.text
    payout_id = paid.json()["payId"]
    await _paid_out(day, payout_id)

    a = await merchant(day.env.pool, day.key_id, "Recon Acme", account_no="6222000055556666")
    b = await merchant(day.env.pool, day.key_id, "Recon Beta")
    first = await _settled(day, [(a, 6_000), (b, 3_000)], 1_000)
    await _settled(day, [(a, 2_500), (b, 1_500)], 500)
    withdrawn = await day.post(
        f"/v1/merchants/{a.merchant_id}/withdrawals",
        {"requestId": f"wd-{uuid.uuid4().hex[:12]}", "amount": WITHDRAWAL},
    )
    assert withdrawn.status_code == 202, withdrawn.text
    withdrawal_id = withdrawn.json()["payId"]
    await _paid_out(day, withdrawal_id)

    released = await day.http.put(f"{day.bank_url}/bank/v1/simulator/daily-files/{today}", json={})
    assert released.status_code == 200, released.text
    settings = day.env.settings.model_copy(
        update={"bank_base_url": day.bank_url, "bank_app_id": day.env.app_id}
    )
    apps = ChannelAppStore(day.env.pool, settings.master_keys(), merchant_keys=True)
    async with aiohttp.ClientSession() as session:
        fetch = download_fetcher(settings, session, apps)
        done = await fetch_day(day.env.pool, fetch, settings, today, [Source.BANK])
        assert done == {Source.BANK: "imported"}
        clean = await current_run(day.env.pool, Source.BANK, today)
        # 4 transfers in, the payout, the withdrawal, 3 split lines of each settlement.
        assert clean["counts"] == {
            "matched": 12, "missing_on_platform": 0, "missing_at_channel": 0,
            "amount_mismatch": 0, "status_mismatch": 0, "duplicate": 0, "fee_difference": 0,
        }  # fmt: skip
        assert clean["unexplained"] == 0
        checks = await balance_checks(day.env.pool, clean["run_id"])
        assert {state for *_, state in checks.values()} == {"AGREED"}, checks
        # The members' balances are checked under their ledger accounts: a merchant's splits
        # (booked under its member id) and its withdrawal (under its ledger account) together.
        assert checks[a.account_id][:2] == (6_000 + 2_500 - WITHDRAWAL,) * 2
        assert checks[b.account_id][:2] == (3_000 + 1_500,) * 2
        assert checks[PLATFORM_MEMBER][:2] == (1_000 + 500,) * 2
        assert a.merchant_id not in checks and b.merchant_id not in checks
        assert checks[A1][0] + checks[A2][0] == 4 * TRANSFER - PAYOUT

        # The same day issued again, one difference of every class.
        at = {
            r["record_id"]: r["account_id"]
            for r in await day.env.pool.fetch(
                "SELECT record_id, account_id FROM bank_transfer_records "
                "WHERE record_id = ANY($1::text[])",
                records,
            )
        }
        # Dropped from an account that keeps another line (a sub-account without any line that
        # day is in no balance record of the file).
        transfer_dropped = next(r for r in records if sum(1 for x in records if at[x] == at[r]) > 1)
        transfer_reversed = next(r for r in records if r != transfer_dropped)
        dropped_at = at[transfer_dropped]
        injected = [
            {"kind": "drop", "reference": transfer_dropped},
            {"kind": "amount", "reference": payout_id, "amountFen": PAYOUT + 500},
            {"kind": "duplicate", "reference": first, "account": a.merchant_id},
            {"kind": "fee", "reference": withdrawal_id, "feeFen": 3},
            {"kind": "status", "reference": transfer_reversed, "status": "REVERSED"},
            {"kind": "add", "account": b.merchant_id, "amountFen": 777,
             "reference": "SPLIT-NOT-OURS", "business": "SPLIT_IN"},
        ]  # fmt: skip
        released = await day.http.put(
            f"{day.bank_url}/bank/v1/simulator/daily-files/{today}",
            json={"discrepancies": injected},
        )
        assert released.status_code == 200, released.text
        name, data = await fetch(Source.BANK, today)
        taken = await take_file(
            day.env.pool, Source.BANK, today, name, data, by="acceptance", settings=settings
        )
    run = taken.run
    assert run is not None and run.superseded == clean["run_id"]
    assert run.counts == {
        "matched": 8, "missing_on_platform": 1, "missing_at_channel": 1, "amount_mismatch": 1,
        "status_mismatch": 1, "duplicate": 1, "fee_difference": 1,
    }  # fmt: skip
    assert {c: n for c, n in run.sums.items() if c != "matched"} == {
        "missing_on_platform": 777, "missing_at_channel": TRANSFER,
        "amount_mismatch": PAYOUT + 500, "status_mismatch": TRANSFER, "duplicate": 6_000,
        "fee_difference": WITHDRAWAL,
    }  # fmt: skip
    found = {
        r["class"]: r["reference"]
        for r in await day.env.pool.fetch(
            "SELECT class, reference FROM recon_discrepancies WHERE run_id = $1", run.run_id
        )
    }
    assert set(found) == {
        "missing_on_platform", "missing_at_channel", "amount_mismatch", "status_mismatch",
        "duplicate", "fee_difference",
    }  # fmt: skip
    checks = await balance_checks(day.env.pool, run.run_id)
    assert all(state in ("AGREED", "EXPLAINED") for *_, state in checks.values()), checks
    assert checks[a.account_id][3] == "EXPLAINED" and checks[a.account_id][2] == 6_000
    assert checks[b.account_id][3] == "EXPLAINED" and checks[b.account_id][2] == 777
    # The transfer dropped: the bank lacks it (and the payout's 500 more, on the payer).
    expected_at_dropped = -TRANSFER - (500 if dropped_at == payer else 0)
    assert checks[dropped_at][2:] == (expected_at_dropped, "EXPLAINED"), checks
    assert checks[payer][3] == "EXPLAINED"
    assert run.unexplained == 0
    await assert_ledger_invariants(day.env.pool)
