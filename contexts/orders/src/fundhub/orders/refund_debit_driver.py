"""Drives each refund debit at the depository until the bank's result is final: a loop in
payment-worker, like settlement's scheduler for splits.

A debit due is claimed (its next call pushed back) and committed before any call; PENDING is
registered, PROCESSING asked after (and registered again, under the same id, when the bank says
it never got it). Each answer is recorded in a short transaction of its own. The bank out of
reach changes nothing: the backoff brings the debit back. A refusal (E070) or a failure (E071)
is final and alerts: the members still hold the money at the bank that the ledger has given
back, and the day's reconciliation shows it until a person settles it.
"""

from __future__ import annotations

import asyncio

import structlog

from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode
from fundhub.orders import refund_debits_store as store
from fundhub.orders.metrics import ALERTS, REFUND_DEBIT_CALLS
from fundhub.orders.refund_debits import (
    DebitRefused,
    DebitReport,
    DebitState,
    DebitStatus,
    DebitUnavailable,
    MemberDebit,
    RefundDebit,
    RefundDebitPort,
)

log = structlog.get_logger(__name__)

BATCH = 100


def debit_from_row(row: store.DebitRow) -> RefundDebit:
    return RefundDebit(
        refund_id=row["refund_id"],
        order_id=row["order_id"],
        order_no=row["order_no"],
        settlement_id=row["settlement_id"],
        currency=row["currency"],
        members=tuple(
            MemberDebit(m["memberId"], m["accountId"], int(m["amount"])) for m in row["members"]
        ),
    )


class RefundDebitDriver:
    def __init__(
        self, pool: Pool, port: RefundDebitPort, base_s: float = 1.0, max_s: float = 60.0
    ) -> None:
        self._pool = pool
        self._port = port
        self._base_s = base_s
        self._max_s = max_s

    async def run(self, interval_s: float = 0.5) -> None:
        while True:
            try:
                looked = await self.drive_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: try again next tick
                log.error("refund_debit_drive_failed", error=str(exc))
                looked = 0
            if looked < BATCH:
                await asyncio.sleep(interval_s)

    async def drive_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due(conn, BATCH, self._base_s, self._max_s)
        await asyncio.gather(*(self._drive(row) for row in due))
        return len(due)

    async def _drive(self, row: store.DebitRow) -> None:
        debit = debit_from_row(row)
        action = "register" if row["state"] == DebitState.PENDING else "query"
        try:
            report: DebitReport | None = None
            if action == "query":
                report = await self._port.query(debit.refund_id)
            if report is None:
                action = "register"
                report = await self._port.register(debit)
        except DebitUnavailable as exc:
            REFUND_DEBIT_CALLS.labels(action, "unavailable").inc()
            log.warning("refund_debit_unanswered", refund_id=debit.refund_id, error=str(exc))
            return
        except DebitRefused as exc:
            REFUND_DEBIT_CALLS.labels(action, "refused").inc()
            await self._refused(debit, exc)
            return
        REFUND_DEBIT_CALLS.labels(action, report.status.value.lower()).inc()
        await self._record(debit, report)

    async def _refused(self, debit: RefundDebit, exc: DebitRefused) -> None:
        if exc.status_code == 409:
            # The id names another debit at the bank: nothing to conclude; a person looks, and
            # the backoff keeps asking.
            ALERTS.labels("refund-debit-id-conflict").inc()
            log.error("refund_debit_id_conflict", refund_id=debit.refund_id, reason=exc.reason)
            return
        code = ErrorCode.REFUND_DEBIT_REFUSED.value[1]
        async with self._pool.acquire() as conn, conn.transaction():
            done = await store.record(
                conn, debit.refund_id, DebitState.FAILED, error_code=code, reason=exc.reason
            )
        if done:
            ALERTS.labels("refund-debit-refused").inc()
            log.error("refund_debit_refused", refund_id=debit.refund_id, reason=exc.reason)

    async def _record(self, debit: RefundDebit, report: DebitReport) -> None:
        state = DebitState(report.status.value)
        failed = report.status is DebitStatus.FAILED
        async with self._pool.acquire() as conn, conn.transaction():
            done = await store.record(
                conn,
                debit.refund_id,
                state,
                bank_debit_id=report.bank_debit_id,
                error_code=ErrorCode.REFUND_DEBIT_FAILED.value[1] if failed else None,
                reason=report.reason,
                finished_at=report.finished_time,
            )
        if done and failed:
            ALERTS.labels("refund-debit-failed").inc()
            log.error("refund_debit_failed", refund_id=debit.refund_id, reason=report.reason)
        elif done and state.is_final:
            log.info("refund_debit_done", refund_id=debit.refund_id, amount=debit.amount)
