"""Refunds in payment-worker: take each new refund's money (one transaction per command batch),
then send it to the channel and record what the channel answers.

Taking the money first means a refund the channel pays always finds it frozen on the parts'
accounts (from pending before settlement, available after); when it is not there the refund is
FAILED E004 and the channel never hears of it. A refund is sent only under its own id
(``out_refund_no``), so a resend the channel already saw is deduplicated by the channel. Its
answer goes through the same ``states.answer_refund`` as its notification, in a short
transaction of its own, so whichever comes first finishes the refund and the other is stale.
A channel out of reach changes nothing: the poller sends again (never acknowledged) or asks
(``query_refund``), with backoff, and alerts once past the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from fundhub.channels.events import Channel
from fundhub.channels.ports import (
    REFUND_NOT_FOUND,
    ChannelRefused,
    ChannelUnavailable,
    RefundAnswer,
    RefundOrder,
)
from fundhub.common import inbox, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection, Pool
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.orders import states, store
from fundhub.orders.changes import lock_changes
from fundhub.orders.channel_choice import Channels
from fundhub.orders.messages import RefundCommand
from fundhub.orders.metrics import ALERTS, CHANNEL_CALLS
from fundhub.orders.states import RefundState

log = structlog.get_logger(__name__)

CONSUMER = "payment-worker.order-refunds"
CLAIM_LIMIT = 100


@dataclass(frozen=True)
class Outgoing:
    """A refund whose money is held, as the channel needs it."""

    order_id: str
    refund_id: str
    channel: Channel
    app_id: str
    amount: int
    total: int
    reason: str | None


@dataclass
class Held:
    to_send: list[Outgoing] = field(default_factory=list)
    failed: int = 0
    duplicates: int = 0


async def hold_refunds(conn: Connection, topics: Topics, commands: list[RefundCommand]) -> Held:
    """Run inside the caller's transaction; the caller sends ``to_send`` once committed."""
    held = Held()
    fresh, held.duplicates = await inbox.take_fresh(
        conn, CONSUMER, commands, lambda c: c.message_id
    )
    if not fresh:
        return held
    changes = await lock_changes(
        conn, topics, {c.order_id for c in fresh}, {c.refund_id for c in fresh}
    )
    for command in fresh:
        order = changes.order(command.order_id)
        refund = changes.refund(command.refund_id, command.order_id)
        if order is None or refund is None:
            log.error("refund_command_without_refund", **_ids(command))
            continue
        move = states.hold(order, refund, changes.balances, new_entry_id())
        changes.apply(move, command.correlation_id, command.order_id, command.refund_id)
        row = changes.refunds[command.refund_id]
        if row["state"] == RefundState.PROCESSING and row["held"]:
            order_row = changes.orders[command.order_id]
            held.to_send.append(_outgoing(order_row, row))
        elif row["state"] == RefundState.FAILED:
            held.failed += 1
    await changes.flush(conn, outbox.PAYOUTS_CHANNEL)
    return held


def _ids(command: RefundCommand) -> dict[str, str]:
    return {"order_id": command.order_id, "refund_id": command.refund_id}


def _outgoing(order: store.OrderRow, refund: store.RefundRow) -> Outgoing:
    return Outgoing(
        order_id=order["order_id"],
        refund_id=refund["refund_id"],
        channel=Channel(order["channel"]),
        app_id=order["app_id"],
        amount=refund["amount"],
        total=order["amount"],
        reason=refund["reason"],
    )


# The channel's word on a refund, or its refusal (the channel's code and message).
Answer = RefundAnswer | ChannelRefused


class RefundSender:
    """Bounded concurrent calls to the channels' refund APIs; each answer recorded alone."""

    def __init__(
        self, pool: Pool, topics: Topics, channels: Channels, concurrency: int = 32
    ) -> None:
        self._pool = pool
        self._topics = topics
        self._channels = channels
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def send_later(self, refunds: Sequence[Outgoing]) -> None:
        """In the background: the consumer goes on while the channel takes its time."""
        for refund in refunds:
            task = asyncio.create_task(self.send(refund), name=f"refund-{refund.refund_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send(self, refund: Outgoing) -> None:
        """Ask the channel to refund; record its answer (none: the poller tries again)."""
        async with self._slots:
            adapter = self._channels.adapter(refund.channel)
            if adapter is None:
                log.error("refund_channel_without_adapter", refund_id=refund.refund_id)
                return
            order = RefundOrder(
                channel=refund.channel,
                app_id=refund.app_id,
                out_trade_no=refund.order_id,
                out_refund_no=refund.refund_id,
                refund_fen=refund.amount,
                total_fen=refund.total,
                reason=refund.reason or "refund",
                notify_url=self._channels.notify_url(refund.channel),
            )
            await self._call(refund, "refund", lambda: adapter.refund(order))

    async def follow(self, row: store.RefundRow) -> None:
        """The poller's look at a refund: never acknowledged -> send it again, else ask."""
        async with self._pool.acquire() as conn:
            order = await store.order_by_id(conn, row["order_id"])
        if order is None:
            return
        outgoing = _outgoing(order, row)
        if row["submitted_at"] is None:
            await self.send(outgoing)
            return
        async with self._slots:
            adapter = self._channels.adapter(outgoing.channel)
            if adapter is None:
                log.error("refund_channel_without_adapter", refund_id=outgoing.refund_id)
                return
            channel, app_id, refund_id = outgoing.channel, outgoing.app_id, outgoing.refund_id
            order_id = outgoing.order_id
            lost = await self._call(
                outgoing,
                "query",
                lambda: adapter.query_refund(channel, app_id, refund_id, order_id),
            )
        if lost:
            await self._forget_answer(outgoing)
            await self.send(outgoing)

    async def _call(
        self, refund: Outgoing, action: str, call: Callable[[], Awaitable[RefundAnswer]]
    ) -> bool:
        """Make the call and record its answer; True when a query found the channel never got
        the refund (the caller sends it again, under the same out_refund_no)."""
        label = refund.channel.value
        answer: Answer
        try:
            answered = await call()
        except ChannelUnavailable as exc:
            CHANNEL_CALLS.labels(label, action, "unavailable").inc()
            log.warning(f"refund_{action}_unanswered", refund_id=refund.refund_id, error=str(exc))
            return False
        except ChannelRefused as exc:
            if action == "query" and exc.code == REFUND_NOT_FOUND:
                CHANNEL_CALLS.labels(label, action, "not-found").inc()
                return True
            CHANNEL_CALLS.labels(label, action, "refused").inc()
            answer = exc
        else:
            CHANNEL_CALLS.labels(label, action, answered.state.value.lower()).inc()
            answer = answered
        try:
            await self.record(refund.order_id, refund.refund_id, answer)
        except Exception:
            # The poller asks the channel again; nothing was written for this answer.
            log.exception("refund_answer_not_recorded", refund_id=refund.refund_id)
        return False

    async def _forget_answer(self, refund: Outgoing) -> None:
        """The channel acknowledged the refund, then says it has none: what it answered then
        (its refund id) no longer stands. Sent again under the same out_refund_no, the refund
        it makes now is the one; a person should know it happened."""
        ALERTS.labels("refund-lost-by-channel").inc()
        log.error("refund_lost_by_channel_resending", refund_id=refund.refund_id)
        async with self._pool.acquire() as conn, conn.transaction():
            changes = await lock_changes(conn, self._topics, [refund.order_id], [refund.refund_id])
            row = changes.refunds.get(refund.refund_id)
            if row is not None and row["state"] == RefundState.PROCESSING:
                changes.touch_refund(refund.refund_id, channel_refund_id=None, submitted_at=None)
            await changes.flush(conn, outbox.PAYOUTS_CHANNEL)

    async def record(self, order_id: str, refund_id: str, answer: Answer) -> None:
        """The channel's answer, through the state machine, in a transaction of its own."""
        async with self._pool.acquire() as conn, conn.transaction():
            changes = await lock_changes(conn, self._topics, [order_id], [refund_id])
            order = changes.order(order_id)
            refund = changes.refund(refund_id, order_id)
            if order is None or refund is None:
                return
            if isinstance(answer, ChannelRefused):
                reason = f"the channel refused the refund: {answer.code}: {answer.message}"
                move = states.refuse_refund(order, refund, reason, new_entry_id())
            else:
                move = states.answer_refund(
                    order, refund, answer.state, answer.refund_id, new_entry_id()
                )
            changes.apply(move, f"channel-answer:{refund_id}", order_id, refund_id)
            if changes.refunds[refund_id]["submitted_at"] is None:
                changes.touch_refund(refund_id, submitted_at=utcnow())
            await changes.flush(conn, outbox.PAYOUTS_CHANNEL)


class RefundPoller:
    """Follows held refunds the channel has not finished: alerts those past their deadline,
    and looks at those due (claims commit before any call, so replicas share the work)."""

    def __init__(self, pool: Pool, sender: RefundSender, base_s: float, max_s: float) -> None:
        self._pool = pool
        self._sender = sender
        self._base_s = base_s
        self._max_s = max_s

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            try:
                looked = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: try again next tick
                log.error("refund_poll_failed", error=str(exc))
                looked = 0
            if looked < CLAIM_LIMIT:
                await asyncio.sleep(interval_s)

    async def poll_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            overdue = await store.mark_overdue_refunds(conn, CLAIM_LIMIT)
        for row in overdue:
            ALERTS.labels("refund-deadline").inc()
            log.error(
                "refund_past_deadline",
                refund_id=row["refund_id"],
                order_id=row["order_id"],
                note="no final state from the channel; kept PROCESSING, a person must check",
            )
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due_refunds(conn, CLAIM_LIMIT, self._base_s, self._max_s)
        if due:
            await asyncio.gather(*(self._sender.follow(row) for row in due))
        return len(due)
