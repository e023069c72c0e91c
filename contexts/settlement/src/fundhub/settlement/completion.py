"""One transaction's settlement changes: applied in memory in order, then written in one
statement (entry, balances, settlements, the orders settled, the callbacks).

Every path that moves a settlement (the depository's answer to the registration, its status
query, its signed notification) goes through ``Batch``, so a SETTLED settlement's entry, its
balances, its order's ``settled_at`` and its callback are written together or not at all.
The rows are locked in one order everywhere: the orders, the settlements, the balances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from fundhub.common import db, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import Balance, InsufficientFunds, JournalEntry, apply_entry
from fundhub.orders import settlement_marks
from fundhub.settlement import seams, store
from fundhub.settlement.metrics import ALERTS, TRANSITIONS
from fundhub.settlement.states import SettlementState, Transition
from fundhub.settlement.store import SettlementRow
from fundhub.settlement.wire import settlement_body

log = structlog.get_logger(__name__)

# An order's callbacks (its payment, refunds and settlement) share one type: the dispatcher
# delivers one per subject (here the settlementId) and state, to the order's notifyUrl.
TYPE_CALLBACK = "order.callback"


@dataclass
class Batch:
    """Rows locked by the caller's transaction, and what the batch did to them."""

    topics: Topics
    rows: dict[str, SettlementRow]
    balances: dict[str, Balance]
    entries: list[JournalEntry] = field(default_factory=list)
    correlations: list[str | None] = field(default_factory=list)
    touched_balances: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    settled_orders: list[str] = field(default_factory=list)
    refused_orders: list[str] = field(default_factory=list)
    events: list[tuple[str, str | None, Envelope]] = field(default_factory=list)

    def apply(self, settlement_id: str, transition: Transition, correlation_id: str) -> bool:
        """Apply one transition; True when the settlement's state changed."""
        row = self.rows[settlement_id]
        context: dict[str, Any] = {"settlement_id": settlement_id, "note": transition.note}
        if transition.alert:
            ALERTS.labels("rejected" if transition.outcome == "rejected" else "contradiction").inc()
            log.error("settlement_report_alert", outcome=transition.outcome, **context)
        moved = transition.settlement
        if moved is None:
            if not transition.alert:
                log.info("settlement_report_ignored", outcome=transition.outcome, **context)
            return False
        if transition.entry is not None:
            try:
                updated = apply_entry(self.balances, transition.entry)
            except InsufficientFunds as exc:
                # Refunds are held from pending only while no settlement is live, so this is a
                # bug or a hand-made change: move nothing and let a person look.
                ALERTS.labels("pending-missing").inc()
                log.error("settlement_pending_missing", error=str(exc), **context)
                return False
            self.balances.update(updated)
            self.touched_balances.update(updated)
            self.entries.append(transition.entry)
            self.correlations.append(correlation_id)
        changed_state: bool = moved.state.value != row["state"]
        row.update(
            state=moved.state.value,
            bank_split_id=moved.bank_split_id,
            error_code=moved.error_code,
            message=moved.message,
        )
        if changed_state and moved.state.is_final:
            row["finished_at"] = utcnow()
            row["next_attempt_at"] = None
        self.changed.add(settlement_id)
        if changed_state:
            TRANSITIONS.labels(moved.state.value).inc()
            log.info("settlement_moved", state=moved.state.value, **context)
            if moved.state is SettlementState.SETTLED:
                self.settled_orders.append(row["order_id"])
            elif moved.state is SettlementState.REFUSED:
                self.refused_orders.append(row["order_id"])
            if moved.state.is_final:
                self._announce(row, correlation_id)
        return changed_state

    def _announce(self, row: SettlementRow, correlation_id: str) -> None:
        """The final state to the order's notifyUrl, through the callback dispatcher."""
        if not row["notify_url"]:
            return
        sid = row["settlement_id"]
        envelope = Envelope(
            id=deterministic_id("settlement-callback", sid, row["state"]),
            type=TYPE_CALLBACK,
            correlation_id=correlation_id,
            data={
                "subjectId": sid,
                "state": row["state"],
                "url": row["notify_url"],
                "keyId": row["key_id"],
                "body": settlement_body(row),
            },
        )
        self.events.append((self.topics.client_callbacks, row["order_no"], envelope))

    async def flush(self, conn: Connection) -> None:
        """Every write in one statement (and the orders settled), in the caller's transaction."""
        await settlement_marks.mark_settled(conn, self.settled_orders, utcnow())
        await settlement_marks.clear_settling(conn, self.refused_orders)
        await db.write_together(
            conn,
            [
                *ledger_store.entry_writes(self.entries, self.correlations),
                *ledger_store.balance_writes(
                    self.balances[a] for a in sorted(self.touched_balances)
                ),
                *store.settlement_writes([self.rows[s] for s in sorted(self.changed)]),
                *outbox.outbox_writes(self.events),
            ],
            notify=outbox.PAYOUTS_CHANNEL if self.events else None,
        )


async def lock_batch(conn: Connection, topics: Topics, settlement_ids: Iterable[str]) -> Batch:
    """Lock the settlements' orders, the settlements, then their parts' balances."""
    ids = sorted(set(settlement_ids))
    await seams.lock_order_rows(conn, (await store.order_ids_of(conn, ids)).values())
    rows = await store.lock(conn, ids)
    accounts = {p["accountId"] for row in rows.values() for p in row["parts"]}
    balances = await ledger_store.lock_balances(conn, accounts)
    return Batch(topics, rows, balances)
