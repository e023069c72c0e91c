"""One transaction's changes to orders and refunds: applied in memory in order, then written in
one statement (ledger entries, balances, order and refund rows, exceptions, outbox events).

Every path that moves an order or a refund (the channels' notifications in notify-ingest, the
refund commands, the channel's answers and the poller in payment-worker) goes through
``OrderChanges``, so a transition's entry, its rows and its callback are written together or
not at all, and a state reached once is announced once (the callback's id is derived from the
subject and the state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from fundhub.channels.events import Channel, ChannelEvent, EventKind
from fundhub.common import db, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import Balance, JournalEntry, apply_entry
from fundhub.orders import store
from fundhub.orders.metrics import ALERTS, EXCEPTIONS, TRANSITIONS
from fundhub.orders.postings import clearing_account
from fundhub.orders.refund_debits import RefundDebit, debit_of
from fundhub.orders.refund_debits_store import debit_writes
from fundhub.orders.states import Move, Order, OrderState, Refund, RefundState
from fundhub.orders.store import OrderRow, RefundRow
from fundhub.orders.wire import order_body, refund_body

log = structlog.get_logger(__name__)

TYPE_CALLBACK = "order.callback"
# The order's payment reaches one of these; each is delivered to its notifyUrl once.
_ANNOUNCED_ORDER_STATES = frozenset({OrderState.PAID, OrderState.CLOSED})


@dataclass(frozen=True)
class Source:
    """The notification an event came from, kept whole when it becomes an exception."""

    message_id: str
    event: ChannelEvent


def paid_at(source: Source | None) -> datetime:
    """When the payer paid: the channel's time (WeChat Pay's ``success_time``, Alipay's
    ``gmt_payment``), never later than now. The order's business day, and so its T+1 cut-off,
    is the channel's: a notice retried past midnight does not move the payment to the next day
    (the channel's bill and the depository date it by the payment too)."""
    now = utcnow()
    if source is None or source.event.kind is not EventKind.PAYMENT:
        return now
    return min(source.event.occurred_at, now)


@dataclass
class OrderChanges:
    """Rows and balances locked by the caller's transaction, and what it did to them."""

    topics: Topics
    orders: dict[str, OrderRow]
    parts: dict[str, list[OrderRow]]
    refunds: dict[str, RefundRow]
    balances: dict[str, Balance]
    entries: list[JournalEntry] = field(default_factory=list)
    correlations: list[str | None] = field(default_factory=list)
    touched_balances: set[str] = field(default_factory=set)
    changed_orders: set[str] = field(default_factory=set)
    changed_refunds: set[str] = field(default_factory=set)
    events: list[tuple[str, str | None, Envelope]] = field(default_factory=list)
    exceptions: list[tuple[Any, ...]] = field(default_factory=list)
    debits: list[RefundDebit] = field(default_factory=list)

    def order(self, order_id: str) -> Order | None:
        row = self.orders.get(order_id)
        return None if row is None else store.to_order(row, self.parts.get(order_id, []))

    def refund(self, refund_id: str | None, order_id: str) -> Refund | None:
        """The refund, if it is one of ``order_id``'s (locked by this transaction)."""
        row = self.refunds.get(refund_id) if refund_id else None
        if row is None or row["order_id"] != order_id:
            return None
        return store.to_refund(row)

    def apply(
        self,
        move: Move,
        correlation_id: str,
        order_id: str,
        refund_id: str | None = None,
        source: Source | None = None,
    ) -> bool:
        """Apply one move; True when it changed a state (the order's or the refund's)."""
        context: dict[str, Any] = {"order_id": order_id, "note": move.note}
        if refund_id:
            context["refund_id"] = refund_id
        if move.alert:
            reason = "exception" if move.exception else "contradiction"
            ALERTS.labels(reason).inc()
            log.error("order_event_alert", outcome=move.outcome, **context)
        if move.exception is not None and source is not None:
            self._keep(source, move.exception, order_id if order_id in self.orders else None)
        if move.order is None and move.refund is None:
            if not move.alert:
                log.info("order_event_ignored", outcome=move.outcome, **context)
            return False
        if move.entry is not None:
            # The domain only asks for money that is there: InsufficientFunds here is a bug.
            updated = apply_entry(self.balances, move.entry)
            self.balances.update(updated)
            self.touched_balances.update(updated)
            self.entries.append(move.entry)
            self.correlations.append(correlation_id)
        moved = False
        if move.order is not None:
            moved |= self._order_moved(move.order, correlation_id, source)
        if move.refund is not None and refund_id is not None:
            moved |= self._refund_moved(order_id, move.refund, correlation_id)
        log.info("order_event_applied", moved=moved, **context)
        return moved

    def touch_refund(self, refund_id: str, **changes: Any) -> None:
        """Bookkeeping columns of a refund (submitted_at, next_poll_at)."""
        self.refunds[refund_id].update(changes)
        self.changed_refunds.add(refund_id)

    def _order_moved(self, order: Order, correlation_id: str, source: Source | None) -> bool:
        row = self.orders[order.order_id]
        moved: bool = order.state.value != row["state"]
        row.update(state=order.state.value, transaction_id=order.transaction_id)
        if moved and order.state is OrderState.PAID:
            row["paid_at"] = paid_at(source)
        self.changed_orders.add(order.order_id)
        if moved:
            TRANSITIONS.labels("order", order.state.value).inc()
            if order.state in _ANNOUNCED_ORDER_STATES and row["notify_url"]:
                body = order_body(row, self.parts.get(order.order_id, []), [])
                self._callback(row, order.order_id, order.state.value, body, correlation_id)
        return moved

    def _refund_moved(self, order_id: str, refund: Refund, correlation_id: str) -> bool:
        row = self.refunds[refund.refund_id]
        moved: bool = refund.state.value != row["state"]
        row.update(
            state=refund.state.value,
            error_code=refund.error_code,
            message=refund.message,
            held=refund.held,
            source_bucket=refund.source.value if refund.source else None,
            channel_refund_id=refund.channel_refund_id,
        )
        if moved and refund.state.is_final:
            row["finished_at"] = utcnow()
            row["next_poll_at"] = None
        self.changed_refunds.add(refund.refund_id)
        if moved:
            TRANSITIONS.labels("refund", refund.state.value).inc()
            order = self.orders[order_id]
            if refund.state is RefundState.SUCCESS:
                # After the split the members' money is at the depository: it must debit them.
                debit = debit_of(order, self.parts.get(order_id, []), row)
                if debit is not None:
                    self.debits.append(debit)
            if order["notify_url"]:  # the body is built only for an order that wants it
                body = refund_body(order, row, self.parts.get(order_id, []))
                self._callback(order, refund.refund_id, refund.state.value, body, correlation_id)
        return moved

    def _callback(
        self, order: OrderRow, subject: str, state: str, body: dict[str, Any], correlation_id: str
    ) -> None:
        """The order's notifyUrl hears of it (a final state of its payment or of a refund),
        through the callback dispatcher; the id is derived from the subject and the state,
        so a transition replayed after a crash is announced under the same id."""
        if not order["notify_url"]:
            return
        envelope = Envelope(
            id=deterministic_id("order-callback", subject, state),
            type=TYPE_CALLBACK,
            correlation_id=correlation_id,
            data={
                "subjectId": subject,
                "state": state,
                "url": order["notify_url"],
                "keyId": order["key_id"],
                "body": body,
            },
        )
        self.events.append((self.topics.client_callbacks, subject, envelope))

    def _keep(self, source: Source, reason: str, order_id: str | None) -> None:
        event = source.event
        EXCEPTIONS.labels(event.channel.value, event.kind.value).inc()
        self.exceptions.append(
            (
                source.message_id,
                event.channel.value,
                event.app_id,
                event.out_trade_no,
                event.out_refund_no,
                event.transaction_id,
                event.kind.value,
                reason,
                event.model_dump(mode="json", by_alias=True),
                order_id,
            )
        )

    async def flush(self, conn: Connection, wake: str) -> None:
        """Every write in one statement, inside the caller's transaction; ``wake``: the outbox
        channel of the relay to wake for the events."""
        await db.write_together(
            conn,
            [
                *ledger_store.entry_writes(self.entries, self.correlations),
                *ledger_store.balance_writes(
                    self.balances[a] for a in sorted(self.touched_balances)
                ),
                *store.order_writes([self.orders[o] for o in sorted(self.changed_orders)]),
                *store.refund_writes([self.refunds[r] for r in sorted(self.changed_refunds)]),
                *store.exception_writes(self.exceptions),
                *debit_writes(self.debits),
                *outbox.outbox_writes(self.events),
            ],
            notify=wake if self.events else None,
        )


async def lock_changes(
    conn: Connection, topics: Topics, order_ids: Iterable[str], refund_ids: Iterable[str] = ()
) -> OrderChanges:
    """Lock the orders, then the refunds, then the balances of their parts' accounts (created
    when missing, as the ledger does on first sight); one order everywhere: no deadlocks."""
    orders = await store.lock_orders(conn, order_ids)
    if not orders:
        return OrderChanges(topics, {}, {}, {}, {})
    parts = await store.parts_of(conn, orders)
    wanted = [r for r in set(refund_ids) if r]
    refunds = await store.lock_refunds(conn, wanted) if wanted else {}
    customers = {
        (p["account_id"], orders[order_id]["currency"], None)
        for order_id, rows in parts.items()
        for p in rows
    }
    clearing = {clearing_account(Channel(o["channel"]), o["currency"]) for o in orders.values()}
    steps = ledger_store.ensure_and_lock_steps(customers, clearing)
    locked = (await db.run_together(conn, steps))[-1]
    return OrderChanges(topics, orders, parts, refunds, ledger_store.balances_from(locked))
