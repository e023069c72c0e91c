"""Sending frozen payouts to the bank and recording what it answers.

An answer goes through the same ``payouts.settle`` as a callback, in its own short transaction:
it may arrive after (or race) the bank's callback for the same payout, and the state machine
makes the later of the two stale. A bank that gives no answer is never read as a failure: the
payout stays PROCESSING and the poller asks again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog

from fundhub.common.bank_payouts import (
    BankAnswer,
    BankPayoutAdapter,
    BankRequestRefused,
    BankStatus,
    BankUnavailable,
    PayoutOrder,
)
from fundhub.common.clock import utcnow
from fundhub.common.ledger import new_entry_id
from fundhub.common.payout_results import BankResult
from fundhub.common.topics import Topics
from fundhub.payment_worker import payouts, store
from fundhub.payment_worker.metrics import BANK_CALLS
from fundhub.payment_worker.settlement import lock_settlement

log = structlog.get_logger(__name__)

# Refusals that prove the bank made no transfer from the request (see BankRequestRefused).
_NOTHING_MADE = frozenset({400, 422})


def payout_order(row: store.PayoutRow, notify_url: str) -> PayoutOrder:
    payee: dict[str, Any] = row["payee"] or {}
    return PayoutOrder(
        bank_request_id=row["pay_id"],
        payer_account=row["payer_account_id"],
        amount=row["amount"],
        currency=row["currency"],
        payee_account_no=str(payee.get("accountNo", "")),
        payee_account_name=str(payee.get("accountName", "")),
        payee_bank_name=str(payee.get("bankName", "")),
        notify_url=notify_url,
        purpose=row["purpose"],
    )


class Submitter:
    """Bounded concurrent calls to the bank; each answer recorded in its own transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topics: Topics,
        bank: BankPayoutAdapter,
        notify_url: str,
        concurrency: int = 32,
    ) -> None:
        self._pool = pool
        self._topics = topics
        self._bank = bank
        self._notify_url = notify_url
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit_later(self, rows: list[store.PayoutRow]) -> None:
        """Send in the background: the consumer goes on while the bank takes its time."""
        for row in rows:
            task = asyncio.create_task(self.submit(row), name=f"submit-{row['pay_id']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, row: store.PayoutRow) -> None:
        async with self._slots:
            await self._submit(row)

    async def follow(self, row: store.PayoutRow) -> None:
        """The poller's look at one payout: ask the bank; never received -> send it again."""
        async with self._slots:
            pay_id = row["pay_id"]
            try:
                answer = await self._bank.query(pay_id)
            except BankUnavailable as exc:
                BANK_CALLS.labels("query", "unavailable").inc()
                log.warning("payout_query_unanswered", pay_id=pay_id, error=str(exc))
                return
            except BankRequestRefused as exc:
                BANK_CALLS.labels("query", "refused").inc()
                log.error("payout_query_refused", pay_id=pay_id, error=str(exc))
                return
            if answer is None:
                BANK_CALLS.labels("query", "not-found").inc()
                log.info("payout_not_at_bank_resubmitting", pay_id=pay_id)
                await self._submit(row)
                return
            BANK_CALLS.labels("query", answer.status.value.lower()).inc()
            await self.record(pay_id, answer, submitted=True)

    async def _submit(self, row: store.PayoutRow) -> None:
        pay_id = row["pay_id"]
        try:
            order = payout_order(row, self._notify_url)
        except ValueError as exc:  # the gateway validated it; the bank would refuse it too
            answer = BankAnswer(BankStatus.FAILED, None, f"order not sendable: {exc}")
            await self.record(pay_id, answer, submitted=False)
            return
        try:
            answer = await self._bank.submit(order)
        except BankUnavailable as exc:
            BANK_CALLS.labels("submit", "unavailable").inc()
            log.warning("payout_submit_unanswered", pay_id=pay_id, error=str(exc))
            return
        except BankRequestRefused as exc:
            BANK_CALLS.labels("submit", "refused").inc()
            if exc.status_code not in _NOTHING_MADE:
                log.error("payout_submit_refused", pay_id=pay_id, error=str(exc))
                return  # the poller's query tells what the bank holds under this id
            reason = f"the bank refused the request: {exc.reason}"
            await self.record(pay_id, BankAnswer(BankStatus.FAILED, None, reason), False)
            return
        BANK_CALLS.labels("submit", answer.status.value.lower()).inc()
        await self.record(pay_id, answer, submitted=True)

    async def record(self, pay_id: str, answer: BankAnswer, submitted: bool) -> None:
        """Settle the payout with the bank's answer (and note that the bank has the order)."""
        usual = submitted and answer.status is BankStatus.PROCESSING
        if usual and await store.note_submitted(self._pool, pay_id, answer.bank_txn_id):
            return
        result = BankResult(
            status=answer.status,
            bank_txn_id=answer.bank_txn_id,
            reason=answer.reason,
            bank_request_id=pay_id,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            settlement = await lock_settlement(conn, self._topics, [pay_id])
            row = settlement.rows.get(pay_id)
            if row is None:
                return
            if row["state"] == payouts.PayoutState.PROCESSING or answer.final:
                transition = payouts.settle(store.to_payout(row), result, new_entry_id())
                settlement.apply(pay_id, transition, f"bank-answer:{pay_id}")
            if submitted and row["submitted_at"] is None:
                settlement.touch(pay_id, submitted_at=utcnow())
            await settlement.flush(conn)
