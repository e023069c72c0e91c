"""Sending frozen payouts to the bank and recording what it answers.

An answer goes through the same ``states.settle`` as a callback, in its own short transaction:
it may arrive after (or race) the bank's callback for the same payout, and the state machine
makes the later of the two stale. A bank that gives no answer is never read as a failure: the
payout stays PROCESSING and the poller asks again.

Newly accepted payouts go to the bank in batches (``submit_many``, one request per MAX_BATCH),
and the usual answer, PROCESSING, is noted for the whole batch in one statement
(``store.note_submitted_many``); any other answer takes the single payout's full path, so a
payout in a batch ends exactly as it would have alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from fundhub.common.clock import utcnow
from fundhub.common.db import Pool
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.payouts import states, store
from fundhub.payouts.bank import (
    MAX_BATCH,
    BankAnswer,
    BankPayoutAdapter,
    BankRequestRefused,
    BankStatus,
    BankUnavailable,
    PayoutOrder,
)
from fundhub.payouts.bank_results import BankResult
from fundhub.payouts.metrics import BANK_CALLS
from fundhub.payouts.settlement import lock_settlement

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


def _outcome(exc: BankUnavailable | BankRequestRefused) -> str:
    return "unavailable" if isinstance(exc, BankUnavailable) else "refused"


def _unsent(
    call: str, pay_ids: list[str], exc: BankUnavailable | BankRequestRefused, **context: object
) -> None:
    """A request that changed nothing here: counted and logged per payout, which stays as it
    is; the poller's query later tells what the bank holds under each id."""
    BANK_CALLS.labels(call, _outcome(exc)).inc(len(pay_ids))
    for pay_id in pay_ids:
        if isinstance(exc, BankUnavailable):
            log.warning(f"payout_{call}_unanswered", pay_id=pay_id, error=str(exc), **context)
        else:
            log.error(f"payout_{call}_refused", pay_id=pay_id, error=str(exc), **context)


class Submitter:
    """Bounded concurrent calls to the bank (a batch or a single payout each); the PROCESSING
    answers of a batch noted together, every other answer recorded in its own transaction."""

    def __init__(
        self,
        pool: Pool,
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
        """Send in the background, MAX_BATCH rows a request: the consumer goes on while the bank
        takes its time, and one committed consumer batch costs one request, not one a payout."""
        for start in range(0, len(rows), MAX_BATCH):
            chunk = rows[start : start + MAX_BATCH]
            name = f"submit-{chunk[0]['pay_id']}+{len(chunk) - 1}"
            task = asyncio.create_task(self.submit_batch(chunk), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, row: store.PayoutRow) -> None:
        async with self._slots:
            await self._submit(row)

    async def submit_batch(self, rows: list[store.PayoutRow]) -> None:
        """Send the rows in one request (the adapter splits above its limit), note the answers."""
        async with self._slots:
            await self._submit_batch(rows)

    async def follow(self, row: store.PayoutRow) -> None:
        """The poller's look at one payout: ask the bank; never received -> send it again."""
        async with self._slots:
            pay_id = row["pay_id"]
            try:
                answer = await self._bank.query(pay_id)
            except (BankUnavailable, BankRequestRefused) as exc:
                _unsent("query", [pay_id], exc)
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
        order = await self._order(row)
        if order is None:
            return
        try:
            answer = await self._bank.submit(order)
        except BankUnavailable as exc:
            _unsent("submit", [pay_id], exc)
            return
        except BankRequestRefused as exc:
            await self._refused(pay_id, exc)
            return
        BANK_CALLS.labels("submit", answer.status.value.lower()).inc()
        await self.record(pay_id, answer, submitted=True)

    async def _submit_batch(self, rows: list[store.PayoutRow]) -> None:
        orders: list[PayoutOrder] = []
        for row in rows:
            order = await self._order(row)
            if order is not None:
                orders.append(order)
        if not orders:
            return
        pay_ids = [order.bank_request_id for order in orders]
        try:
            outcomes = await self._bank.submit_many(orders)
        except (BankUnavailable, BankRequestRefused) as exc:
            # A refusal is of the batch as such, not of any one order: each is left to the
            # poller, whose query finds it never received and sends it alone, to be judged alone.
            BANK_CALLS.labels("submit-batch", _outcome(exc)).inc()
            _unsent("submit", pay_ids, exc, batch=True)
            return
        BANK_CALLS.labels("submit-batch", "answered").inc()
        answers = {
            pay_id: outcome
            for pay_id, outcome in zip(pay_ids, outcomes, strict=True)
            if isinstance(outcome, BankAnswer)
        }
        usual = [
            (p, a.bank_txn_id) for p, a in answers.items() if a.status is BankStatus.PROCESSING
        ]
        noted = await store.note_submitted_many(self._pool, usual)
        for pay_id, outcome in zip(pay_ids, outcomes, strict=True):
            await self._record_outcome(pay_id, outcome, noted)
        log.info(
            "payout_batch_submitted",
            payouts=len(pay_ids),
            noted=len(noted),
            first_pay_id=pay_ids[0],
            refused=sum(isinstance(outcome, BankRequestRefused) for outcome in outcomes),
        )

    async def _record_outcome(
        self, pay_id: str, outcome: BankAnswer | BankRequestRefused, noted: set[str]
    ) -> None:
        """One payout's part of a batch answer, as ``_submit`` records a single answer."""
        try:
            if isinstance(outcome, BankRequestRefused):
                await self._refused(pay_id, outcome)
                return
            BANK_CALLS.labels("submit", outcome.status.value.lower()).inc()
            if pay_id not in noted:
                await self._settle(pay_id, outcome, submitted=True)
        except Exception:
            # As when each payout had a task of its own: the others' answers are still
            # recorded, and the poller asks the bank again about this one.
            log.exception("payout_answer_not_recorded", pay_id=pay_id)

    async def _order(self, row: store.PayoutRow) -> PayoutOrder | None:
        """The row's order for the bank, or None once it is FAILED as not sendable."""
        try:
            return payout_order(row, self._notify_url)
        except ValueError as exc:  # the gateway validated it; the bank would refuse it too
            answer = BankAnswer(BankStatus.FAILED, None, f"order not sendable: {exc}")
            await self.record(row["pay_id"], answer, submitted=False)
            return None

    async def _refused(self, pay_id: str, exc: BankRequestRefused) -> None:
        if exc.status_code not in _NOTHING_MADE:
            _unsent("submit", [pay_id], exc)
            return
        BANK_CALLS.labels("submit", "refused").inc()
        reason = f"the bank refused the request: {exc.reason}"
        await self.record(pay_id, BankAnswer(BankStatus.FAILED, None, reason), False)

    async def record(self, pay_id: str, answer: BankAnswer, submitted: bool) -> None:
        """Settle the payout with the bank's answer (and note that the bank has the order)."""
        usual = submitted and answer.status is BankStatus.PROCESSING
        if usual and await store.note_submitted(self._pool, pay_id, answer.bank_txn_id):
            return
        await self._settle(pay_id, answer, submitted)

    async def _settle(self, pay_id: str, answer: BankAnswer, submitted: bool) -> None:
        """The full path: the settlement's locks, ``states.settle``, and submitted_at."""
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
            if row["state"] == states.PayoutState.PROCESSING or answer.final:
                transition = states.settle(store.to_payout(row), result, new_entry_id())
                settlement.apply(pay_id, transition, f"bank-answer:{pay_id}")
            if submitted and row["submitted_at"] is None:
                settlement.touch(pay_id, submitted_at=utcnow())
            await settlement.flush(conn)
