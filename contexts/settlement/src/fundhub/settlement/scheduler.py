"""The settlement scheduler: orders due by their T+1 cut-off become settlements, and every
settlement not final is driven at the depository (registered, then asked after) until the bank's
result arrives. A loop in payment-worker.

Safe with any number of replicas: orders are claimed with SKIP LOCKED (and an order's second
live settlement is refused by a unique index), settlements are leased with SKIP LOCKED and their
next call pushed back before the commit that precedes any call to the bank, so a slow bank holds
no lock and a crash only delays a call. A confirmation (``confirm``) wakes the loop through
LISTEN/NOTIFY; otherwise it looks every ``settlement_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import structlog

from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.db import Connection, Pool
from fundhub.common.listening import ChannelListener
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.orders import settlement_marks
from fundhub.settlement import seams, states, store
from fundhub.settlement.amounts import (
    InvalidShares,
    NothingToSettle,
    ReceiverAmount,
    settlement_amounts,
)
from fundhub.settlement.completion import lock_batch
from fundhub.settlement.cutoff import paid_before, parse_cutoff
from fundhub.settlement.depository import (
    MAX_BATCH_SPLITS,
    DepositoryPort,
    DepositoryRefused,
    DepositoryUnavailable,
    SplitInstruction,
    SplitReceiver,
    SplitReport,
)
from fundhub.settlement.metrics import ALERTS, DEPOSITORY_CALLS, SCHEDULED
from fundhub.settlement.states import SettlementState, Transition, Trigger
from fundhub.settlement.store import SettlementRow, to_settlement

log = structlog.get_logger(__name__)

BATCH = 100
PLATFORM_MEMBER = "platform"


def instruction(row: SettlementRow, notify_url: str) -> SplitInstruction:
    """The depository's view of a settlement: the order, each part's member and amount."""
    receivers = tuple(
        SplitReceiver(p["merchantId"] or PLATFORM_MEMBER, p["memberName"], p["amount"])
        for p in row["parts"]
    )
    return SplitInstruction(
        row["settlement_id"], row["order_no"], row["currency"], receivers, notify_url
    )


async def new_settlements(
    conn: Connection,
    orders: list[seams.SettleableOrder],
    trigger: Trigger,
    bank_app_id: str,
    now: datetime,
) -> tuple[list[SettlementRow], list[str]]:
    """Settlement rows for ``orders`` (locked by the caller), and the ids of the orders found
    fully refunded (nothing to settle). Impossible shares are logged and skipped."""
    planned: list[tuple[seams.SettleableOrder, tuple[ReceiverAmount, ...]]] = []
    empty: list[str] = []
    for order in orders:
        try:
            planned.append((order, settlement_amounts(order.shares)))
        except NothingToSettle:
            empty.append(order.order_id)
        except InvalidShares as exc:
            ALERTS.labels("invalid-shares").inc()
            log.error("settlement_invalid_shares", order_id=order.order_id, error=str(exc))
    if not planned:
        return [], empty
    names = await seams.member_names(
        conn, {a.merchant_id for _, amounts in planned for a in amounts if a.merchant_id}
    )
    ids = await store.next_ids(conn, utcnow().date(), len(planned))
    rows = [
        {
            "settlement_id": sid,
            "order_id": order.order_id,
            "key_id": order.key_id,
            "order_no": order.order_no,
            "trigger": trigger.value,
            "currency": order.currency,
            "amount": sum(a.amount for a in amounts),
            "parts": store.parts_json(amounts, names),
            "notify_url": order.notify_url,
            "bank_app_id": bank_app_id,
        }
        for sid, (order, amounts) in zip(ids, planned, strict=True)
    ]
    return rows, empty


async def record(conn: Connection, rows: list[SettlementRow]) -> list[SettlementRow]:
    """The new settlements, and their orders marked settling (refunds wait), together."""
    inserted = await store.insert(conn, rows)
    await settlement_marks.mark_settling(
        conn, {r["order_id"]: r["settlement_id"] for r in inserted}
    )
    return inserted


class Scheduler:
    def __init__(
        self, settings: Settings, pool: Pool, topics: Topics, depository: DepositoryPort
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._topics = topics
        self._depository = depository
        self._cutoff: time = parse_cutoff(settings.settlement_cutoff)
        self._notify_url = settings.bank_callback_url()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = ChannelListener(self._pool, store.CHANNEL, self._wake.set)
        try:
            while True:
                self._wake.clear()
                await self._step("listen", self._listening(listener))
                busy = await self._step("schedule", self.schedule_due(utcnow()))
                busy = await self._step("drive", self.drive_due()) or busy
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._wake.wait(), timeout=self._settings.settlement_interval_s
                        )
        finally:
            await listener.close()

    async def _step(self, what: str, work: Coroutine[Any, Any, int]) -> bool:
        """One part of a tick; True when it had a full batch (more is waiting). A failure
        (the database or the bank away) is logged and waits for the next tick."""
        try:
            return await work >= BATCH
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("settlement_scheduler_failed", step=what, error=str(exc))
            return False

    @staticmethod
    async def _listening(listener: ChannelListener) -> int:
        """Listening again after the server restarted (a tick's work follows regardless)."""
        await listener.ensure()
        return 0

    async def schedule_due(self, now: datetime) -> int:
        """Orders due by their cut-off at ``now`` become SCHEDULED settlements (one batch);
        the fully refunded ones are marked settled, having nothing to move. How many taken."""
        async with self._pool.acquire() as conn, conn.transaction():
            orders = await seams.claim_due_orders(conn, paid_before(now, self._cutoff), BATCH)
            if not orders:
                return 0
            rows, empty = await new_settlements(
                conn, orders, Trigger.SCHEDULED, self._settings.bank_app_id, now
            )
            inserted = await record(conn, rows)
            await settlement_marks.mark_settled(conn, empty, now)
        SCHEDULED.labels("settlement").inc(len(inserted))
        SCHEDULED.labels("fully-refunded").inc(len(empty))
        if inserted or empty:
            log.info("settlements_scheduled", settlements=len(inserted), fully_refunded=len(empty))
        return len(orders)

    async def drive_due(self) -> int:
        """Register PENDING settlements and ask about PROCESSING ones, each due (one batch):
        the registrations in one request to the bank, the queries at once, then every answer
        in one transaction. An answer's transaction locks the parts' balances, the platform
        fee's among them, shared by every order: one transaction per answer queued a batch's
        hundred behind each other's commits."""
        s = self._settings
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due(
                conn, BATCH, s.settlement_poll_base_s, s.settlement_poll_max_s
            )
        if due:
            pending = [r for r in due if r["state"] == SettlementState.PENDING.value]
            asked = [r for r in due if r["state"] != SettlementState.PENDING.value]
            registered, queried = await asyncio.gather(
                self._register_all(pending), asyncio.gather(*(self._drive(row) for row in asked))
            )
            answers = [*registered, *queried]
            await self.apply_answers([a for a in answers if a is not None])
        return len(due)

    async def _register_all(self, rows: list[SettlementRow]) -> list[Answer | None]:
        """The rows registered with the bank, MAX_BATCH_SPLITS to a request; each alone when
        the bank refuses a batch as a whole (it gives no verdict on any one of them)."""
        answers: list[Answer | None] = []
        for start in range(0, len(rows), MAX_BATCH_SPLITS):
            chunk = rows[start : start + MAX_BATCH_SPLITS]
            try:
                outcomes = await self._depository.register_splits(
                    [instruction(row, self._notify_url) for row in chunk]
                )
            except DepositoryUnavailable as exc:
                DEPOSITORY_CALLS.labels("register", "unavailable").inc(len(chunk))
                log.warning(
                    "depository_unanswered",
                    settlement_id=chunk[0]["settlement_id"],
                    settlements=len(chunk),
                    action="register",
                    error=str(exc),
                )
                continue
            except DepositoryRefused as exc:
                log.warning("depository_batch_refused", status=exc.status_code, reason=exc.reason)
                answers += await asyncio.gather(*(self._drive(row) for row in chunk))
                continue
            for row, outcome in zip(chunk, outcomes, strict=True):
                sid = row["settlement_id"]
                if isinstance(outcome, DepositoryRefused):
                    answers.append(self._refused(sid, "register", outcome))
                else:
                    DEPOSITORY_CALLS.labels("register", "answered").inc()
                    answers.append(Answer(sid, outcome, None))
        return answers

    async def _drive(self, row: SettlementRow) -> Answer | None:
        """The bank's answer about the settlement; None when there is nothing to apply."""
        sid = row["settlement_id"]
        action = "register" if row["state"] == SettlementState.PENDING.value else "query"
        try:
            report: SplitReport | None = None
            if action == "query":
                report = await self._depository.query_split(sid)
            if report is None:  # PENDING, or the bank says it never got it: (re)register
                action = "register"
                report = await self._depository.register_split(instruction(row, self._notify_url))
        except DepositoryUnavailable as exc:
            DEPOSITORY_CALLS.labels(action, "unavailable").inc()
            log.warning("depository_unanswered", settlement_id=sid, action=action, error=str(exc))
            return None
        except DepositoryRefused as exc:
            return self._refused(sid, action, exc)
        DEPOSITORY_CALLS.labels(action, "answered").inc()
        return Answer(sid, report, None)

    def _refused(self, sid: str, action: str, exc: DepositoryRefused) -> Answer | None:
        DEPOSITORY_CALLS.labels(action, "refused").inc()
        if exc.status_code == 409:  # the id names another instruction there: a person looks
            ALERTS.labels("id-conflict").inc()
            log.error("depository_id_conflict", settlement_id=sid, reason=exc.reason)
            return None
        return Answer(sid, None, exc.reason)

    async def apply_answer(self, sid: str, report: SplitReport | None, refusal: str | None) -> None:
        await self.apply_answers([Answer(sid, report, refusal)])

    async def apply_answers(self, answers: list[Answer]) -> None:
        """The bank's answers in one short transaction, through the same state machine as its
        notifications: whichever comes second is stale."""
        if not answers:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await lock_batch(conn, self._topics, [a.settlement_id for a in answers])
            for answer in answers:
                row = batch.rows.get(answer.settlement_id)
                if row is None:
                    continue
                current = to_settlement(row)
                transition: Transition = (
                    states.report(current, answer.report, new_entry_id())
                    if answer.report is not None
                    else states.refused_request(current, answer.refusal or "refused")
                )
                batch.apply(answer.settlement_id, transition, answer.settlement_id)
            await batch.flush(conn)


@dataclass(frozen=True)
class Answer:
    """What the depository said about one settlement: a report, or a refusal's reason."""

    settlement_id: str
    report: SplitReport | None
    refusal: str | None
