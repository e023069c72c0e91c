"""What every outage test ends with: the stack's processes all alive, each payout final once, its
callback delivered once per final state, and the money where the final states say it is."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from support.ledger import assert_ledger_invariants, balances

from e2e.conftest import wait_until
from e2e.test_payouts_flow import CLEARING, PayoutStack, clearing_total, payout_rows

FINAL = ("SUCCESS", "FAILED", "RETURNED")


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

    await wait_until(delivered, timeout_s=timeout_s, interval_s=0.5)
    await asyncio.sleep(1.0)  # a second delivery of any of them would be under way by now
    received = Counter(c for c in stack.receiver.received if c[0] in rows)
    doubled = sorted(c for c, n in received.items() if n > 1)
    assert doubled == [], f"{len(doubled)} callbacks delivered more than once: {doubled[:5]}"
    assert set(received) == finals
    assert stack.receiver.bad_signatures == 0
    deliveries = await pool.fetch(
        "SELECT pay_id, state, status FROM callback_deliveries WHERE pay_id = ANY($1::text[])",
        pay_ids,
    )
    assert {(d["pay_id"], d["state"]) for d in deliveries} == finals
    assert len(deliveries) == len(finals)
    assert {d["status"] for d in deliveries} == {"DELIVERED"}

    paid = {p: r for p, r in rows.items() if r["state"] == "SUCCESS"}
    assert await clearing_total(pool) - clearing_before == sum(r["amount"] for r in paid.values())
    lost = await pool.fetch(
        "SELECT p.account_id, sum(p.amount) AS net FROM postings p "
        "JOIN journal_entries e USING (entry_id) "
        "WHERE e.ref_type = 'payout' AND e.ref_id = ANY($1::text[]) "
        "AND p.account_id <> $2 GROUP BY p.account_id",
        pay_ids,
        CLEARING,
    )
    expected = Counter[str]()
    for r in paid.values():
        expected[r["payer_account_id"]] -= r["amount"]
    assert {r["account_id"]: r["net"] for r in lost if r["net"]} == {
        a: n for a, n in expected.items() if n
    }
    now = await balances(pool)
    assert {p: now[p][1] for p in payers} == dict.fromkeys(payers, 0), "amounts left frozen"
    await assert_ledger_invariants(pool)
    return Counter(r["state"] for r in rows.values())
