"""One transaction's payout changes: applied in memory in order, then written in one statement.

Every path that moves a payout (acceptance, the bank's callbacks, its answers to submissions and
status queries) goes through ``Settlement``, so the ledger entry, the balances, the payout row and
the outbox events of a transition are always written together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from fundhub.common import db, inbox, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import Balance, JournalEntry, apply_entry
from fundhub.payouts.metrics import ALERTS, TRANSITIONS
from fundhub.payouts.states import PayoutState, Transition, clearing_account
from fundhub.payouts.store import PayoutRow, lock_payouts, payout_writes
from fundhub.payouts.wire import payout_body

log = structlog.get_logger(__name__)

TYPE_STATE_CHANGED = "payout.state-changed"
TYPE_CALLBACK = "payout.callback"
# The namespace of each event type's deterministic ids (fixed: ids already published use it).
_ID_KINDS = {TYPE_STATE_CHANGED: "payout-state", TYPE_CALLBACK: "callback"}


@dataclass
class Settlement:
    """Rows and balances locked by the caller's transaction, and what the batch did to them."""

    topics: Topics
    rows: dict[str, PayoutRow]
    balances: dict[str, Balance]
    entries: list[JournalEntry] = field(default_factory=list)
    correlations: list[str | None] = field(default_factory=list)
    touched_balances: set[str] = field(default_factory=set)
    changed_rows: set[str] = field(default_factory=set)
    events: list[tuple[str, str | None, Envelope]] = field(default_factory=list)

    def apply(self, pay_id: str, transition: Transition, correlation_id: str) -> bool:
        """Apply one transition to the payout's row; True when the payout's state changed."""
        row = self.rows[pay_id]
        context: dict[str, Any] = {"pay_id": pay_id, "note": transition.note}
        if transition.alert:
            ALERTS.labels("rejected" if transition.outcome == "rejected" else "contradiction").inc()
            log.error("payout_report_alert", outcome=transition.outcome, **context)
        if transition.payout is None:
            if not transition.alert:
                log.info("payout_report_ignored", outcome=transition.outcome, **context)
            return False
        if transition.entry is not None:
            # The domain only asks for money that is there; InsufficientFunds here is a bug.
            updated = apply_entry(self.balances, transition.entry)
            self.balances.update(updated)
            self.touched_balances.update(updated)
            self.entries.append(transition.entry)
            self.correlations.append(correlation_id)
        payout = transition.payout
        moved: bool = payout.state.value != row["state"]
        row.update(
            state=payout.state.value,
            error_code=payout.error_code,
            message=payout.message,
            bank_txn_id=payout.bank_txn_id,
        )
        if moved and payout.state.is_final:
            row["finished_at"] = utcnow()
            row["held"] = False
        self.changed_rows.add(pay_id)
        if moved:
            TRANSITIONS.labels(payout.state.value).inc()
            log.info("payout_moved", state=payout.state.value, **context)
            self._announce(row, correlation_id)
        return moved

    def touch(self, pay_id: str, **changes: Any) -> None:
        """Change bookkeeping columns (held, submitted_at, next_poll_at, deadline_at)."""
        self.rows[pay_id].update(changes)
        self.changed_rows.add(pay_id)

    def _announce(self, row: PayoutRow, correlation_id: str) -> None:
        body = payout_body(row)
        self._emit(self.topics.payout_events, TYPE_STATE_CHANGED, row, correlation_id, body)
        if row["callback_url"] and PayoutState(row["state"]).is_final:
            callback = {
                "payId": row["pay_id"],
                "state": row["state"],
                "url": row["callback_url"],
                "keyId": row["key_id"],
                "body": body,
            }
            self._emit(self.topics.client_callbacks, TYPE_CALLBACK, row, correlation_id, callback)

    def _emit(
        self, topic: str, type_: str, row: PayoutRow, correlation_id: str, data: dict[str, Any]
    ) -> None:
        """An event on the payout reaching its state, keyed by payId; the id is derived from
        both, so a transition replayed after a crash is published under the same id."""
        pay_id = row["pay_id"]
        envelope = Envelope(
            id=deterministic_id(_ID_KINDS[type_], pay_id, row["state"]),
            type=type_,
            correlation_id=correlation_id,
            data=data,
        )
        self.events.append((topic, pay_id, envelope))

    async def flush(self, conn: Connection) -> None:
        """Every write in one statement, inside the caller's transaction."""
        await db.write_together(
            conn,
            [
                *ledger_store.entry_writes(self.entries, self.correlations),
                *ledger_store.balance_writes(
                    self.balances[a] for a in sorted(self.touched_balances)
                ),
                *payout_writes([self.rows[p] for p in sorted(self.changed_rows)]),
                *outbox.outbox_writes(self.events),
            ],
            notify=outbox.PAYOUTS_CHANNEL if self.events else None,
        )


# Clearing accounts seen committed: accounts are never deleted, so once one is known to exist
# no batch needs to ensure it again (one statement less per batch).
_known_clearing: set[str] = set()


async def lock_settlement(conn: Connection, topics: Topics, pay_ids: list[str]) -> Settlement:
    """Lock the payouts, then their payers' balances (one order everywhere: no deadlocks)."""
    rows = await lock_payouts(conn, pay_ids)
    clearing = {clearing_account(r["currency"]) for r in rows.values()} - _known_clearing
    if clearing:
        _known_clearing.update(await ledger_store.ensure_system_accounts(conn, clearing))
    balances = await ledger_store.lock_balances(
        conn, {r["payer_account_id"] for r in rows.values()}
    )
    return Settlement(topics, rows, balances)


class PayoutMessage(Protocol):
    """A consumed message about one payout (a command, a bank result)."""

    @property
    def message_id(self) -> str: ...

    @property
    def pay_id(self) -> str: ...


M = TypeVar("M", bound=PayoutMessage)


async def lock_fresh(
    conn: Connection, topics: Topics, consumer: str, messages: Sequence[M]
) -> tuple[list[M], int, Settlement]:
    """A consumer batch's start: claim the messages' ids (``inbox``), then lock the payouts of
    those never seen before. Returns them, how many were duplicates, and the settlement (an
    empty one, nothing locked, when every message was a duplicate)."""
    fresh, duplicates = await inbox.take_fresh(conn, consumer, messages, lambda m: m.message_id)
    if not fresh:
        return fresh, duplicates, Settlement(topics, {}, {})
    return fresh, duplicates, await lock_settlement(conn, topics, [m.pay_id for m in fresh])
