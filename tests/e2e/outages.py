"""What the outage tests share: the run's own servers in place of the shared ones, a restart
under a payout load, and what every outage test ends with (the stack's processes all alive,
each payout accepted once and final, its callback delivered once per final state, the money
where the final states say it is).

A module restarts the run's own servers by importing ``env`` and ``restartable`` from here:
``env`` then gives the module's stack (``payouts``) a database and topics on them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
import orjson
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants, balances
from support.owned_infra import ensure_running
from support.payout_load import PayoutLoad, Try

from e2e.conftest import wait_until
from e2e.test_payouts_flow import PayoutStack, assert_paid_exactly, payout_rows
from fundhub.cli.devstack import Infra

FINAL = ("SUCCESS", "FAILED", "RETURNED")


@pytest.fixture(scope="module")
def env(owned_env: ModuleEnv) -> ModuleEnv:
    return owned_env


@pytest.fixture
async def restartable(owned_infra_handle: Infra) -> AsyncIterator[Infra]:
    """The run's own servers; both running again after the test, whatever happened in it."""
    yield owned_infra_handle
    await asyncio.to_thread(ensure_running, owned_infra_handle)


@dataclass(frozen=True)
class Outage:
    """When a server was being stopped, was down, was being started, and was back."""

    stopping_at: float
    stopped_at: float
    restarting_at: float
    restarted_at: float

    def away(self, tries: list[Try]) -> list[Try]:
        """The tries sent and answered while the server was down."""
        return [
            t for t in tries if t.sent_at >= self.stopped_at and t.answered_at <= self.restarting_at
        ]

    def describe(self, t: Try) -> str:
        return (
            f"{t.seconds:.1f}s: {t.status} {t.error_code}, sent {t.sent_at - self.stopped_at:+.1f}s "
            f"after the stop (down {self.restarting_at - self.stopped_at:.1f}s, "
            f"back at {self.restarted_at - self.stopped_at:+.1f}s)"
        )


async def restart_under_load(
    load: PayoutLoad,
    stop: Callable[[], object],
    start: Callable[[], object],
    *,
    flowing: Callable[[], Awaitable[bool]],
    down_s: float,
    after_s: float = 5.0,
) -> Outage:
    """Start ``load``; once ``flowing``, ``stop`` the server, leave it down ``down_s``, ``start``
    it, and keep the load on ``after_s`` more; returns when every payout begun is accepted."""
    load.start()
    try:
        await wait_until(flowing, timeout_s=30)
        stopping_at = time.monotonic()
        await asyncio.to_thread(stop)
        stopped_at = time.monotonic()
        await asyncio.sleep(down_s)
        restarting_at = time.monotonic()
        await asyncio.to_thread(start)
        restarted_at = time.monotonic()
        await asyncio.sleep(after_s)
    finally:
        await load.stop()
    return Outage(stopping_at, stopped_at, restarting_at, restarted_at)


async def assert_accepted_once(
    stack: PayoutStack, load: PayoutLoad, outage: Outage, away_bound_s: float, bound_s: float
) -> list[str]:
    """Payouts were sent before, during and after the outage, and each was accepted in the end;
    while the server was away every answer was a 503 E013_UNAVAILABLE within ``away_bound_s``
    (no success, no other refusal, no hang), any answer within ``bound_s``; one payout per
    requestId, whatever the number of tries. Returns the payIds."""
    assert load.unexpected == [], (load.unexpected[:5], failed_requests(stack))
    before = load.sent_between(0, outage.stopping_at)
    during = load.sent_between(outage.stopped_at, outage.restarting_at)
    after = load.sent_between(outage.restarted_at, time.monotonic())
    assert before and during and after, (len(before), len(during), len(after))
    assert set(load.first_sent) == set(load.accepted)
    away = outage.away(load.tries)
    assert away, "no payout was sent while the server was down"
    assert {(t.status, t.error_code) for t in away} == {(503, "E013_UNAVAILABLE")}
    slow = [t for t in away if t.seconds >= away_bound_s]
    slow += [t for t in load.tries if t.seconds >= bound_s]
    assert slow == [], [outage.describe(t) for t in slow[:8]]
    pay_ids = list(load.accepted.values())
    assert len(set(pay_ids)) == len(pay_ids)
    stored = await stack.env.pool.fetchval(
        "SELECT count(*) FROM payouts WHERE request_id = ANY($1::text[])", list(load.accepted)
    )
    assert stored == len(pay_ids)
    return pay_ids


def failed_requests(stack: PayoutStack, most: int = 3) -> list[str]:
    """The gateway's logged 500s (their tracebacks' last lines), for a failure message: CI keeps
    the test's output, not the services' logs."""
    found: list[str] = []
    try:
        lines = stack.gateway.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if '"request_failed"' in line:
            try:
                found.append(str(orjson.loads(line).get("exception", ""))[-600:])
            except orjson.JSONDecodeError:
                found.append(line[-600:])
    return found[:most]


@dataclass(frozen=True)
class BankAnswer:
    record_id: str
    sent_at: float
    answered_at: float
    status: int  # 0: no answer
    text: str

    @property
    def success(self) -> bool:
        return self.status == 200 and self.text == "success"


@dataclass
class RetryingBank:
    """The bank delivering transfer notifications one after another, each sent again (after
    the others) until it is answered ``success``; every answer is kept."""

    http: httpx.AsyncClient
    answers: list[BankAnswer] = field(default_factory=list)

    async def deliver(self, notifications: list[tuple[str, dict[str, str]]]) -> None:
        queue = list(notifications)
        while queue:
            record_id, params = queue.pop(0)
            sent = time.monotonic()
            try:
                response = await self.http.post("/callbacks/bank", json=params)
                status, text = response.status_code, response.text
            except httpx.HTTPError:
                status, text = 0, ""
            answer = BankAnswer(record_id, sent, time.monotonic(), status, text)
            self.answers.append(answer)
            if not answer.success:
                queue.append((record_id, params))
            await asyncio.sleep(0.01 if answer.success else 0.2)

    def acknowledged(self) -> set[str]:
        return {a.record_id for a in self.answers if a.success}

    def between(self, start: float, end: float) -> list[BankAnswer]:
        """The answers to notifications sent and answered within ``[start, end]``."""
        return [a for a in self.answers if a.sent_at >= start and a.answered_at <= end]


def assert_all_alive(stack: PayoutStack) -> None:
    """No process of the stack exited (the outage must not have ended any of them)."""
    for service in stack.services:
        assert service.proc is not None and service.proc.poll() is None, (
            f"{service.name} exited ({service.proc and service.proc.returncode}): {service.tail()}"
        )


async def assert_settled_once(
    stack: PayoutStack,
    pay_ids: list[str],
    payers: list[str],
    clearing_before: int,
    timeout_s: float = 60,
) -> Counter[str]:
    """Every payout reaches a final state; each final state is delivered to the client's
    callbackUrl exactly once (validly signed) and recorded as one DELIVERED delivery; the
    clearing account holds exactly the paid amounts, each payer lost exactly its paid payouts
    and has nothing left frozen; the ledger's invariants hold. Returns the final states."""
    pool = stack.env.pool

    async def final() -> bool:
        rows = await payout_rows(pool, pay_ids)
        return len(rows) == len(pay_ids) and all(r["state"] in FINAL for r in rows.values())

    await wait_until(final, timeout_s=timeout_s, interval_s=0.5)
    rows = await payout_rows(pool, pay_ids)
    finals = {(p, r["state"]) for p, r in rows.items()}

    async def delivered() -> bool:
        return finals <= set(stack.receiver.received)

    async def deliveries() -> list[asyncpg.Record]:
        return await pool.fetch(
            "SELECT pay_id, state, status FROM callback_deliveries WHERE pay_id = ANY($1::text[])",
            pay_ids,
        )

    async def recorded() -> bool:
        # The receiver's 200 reaches the dispatcher before its DELIVERED is committed (and a
        # commit can wait out the tail of an outage): the record is checked once it had time.
        return {d["status"] for d in await deliveries()} == {"DELIVERED"}

    await wait_until(delivered, timeout_s=timeout_s, interval_s=0.5)
    try:
        await wait_until(recorded, timeout_s=timeout_s, interval_s=0.5)
    except AssertionError:
        states = Counter(d["status"] for d in await deliveries())
        raise AssertionError(f"deliveries not all recorded DELIVERED: {dict(states)}") from None
    await asyncio.sleep(1.0)  # a second delivery of any of them would be under way by now
    received = Counter(c for c in stack.receiver.received if c[0] in rows)
    doubled = sorted(c for c, n in received.items() if n > 1)
    assert doubled == [], f"{len(doubled)} callbacks delivered more than once: {doubled[:5]}"
    assert set(received) == finals
    assert stack.receiver.bad_signatures == 0
    recorded_rows = await deliveries()
    assert {(d["pay_id"], d["state"]) for d in recorded_rows} == finals
    assert len(recorded_rows) == len(finals)

    await assert_paid_exactly(pool, rows, clearing_before)
    now = await balances(pool)
    assert {p: now[p][1] for p in payers} == dict.fromkeys(payers, 0), "amounts left frozen"
    await assert_ledger_invariants(pool)
    return Counter(r["state"] for r in rows.values())
