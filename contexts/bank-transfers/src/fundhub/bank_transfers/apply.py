"""Apply a batch of transfer notifications: one transaction, effects exactly once per message.

A transfer first seen for an account that may no longer take money (a merchant closing or
closed, ``ports.ClosedAccounts``) is credited to the suspense account ``sys:bank-suspense:<ccy>``
instead, and kept in ``bank_transfer_exceptions`` for reconciliation with an alert: the money is
neither lost nor left where nobody can take it out. The record keeps the suspense account, so
its later notices (held, deducted, reversed) move the money from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from fundhub.bank_transfers import store
from fundhub.bank_transfers.messages import TransferMessage
from fundhub.bank_transfers.ports import ClosedAccounts
from fundhub.bank_transfers.records import RecordPosition, RecordState, decide, target_state
from fundhub.common import db, inbox, outbox
from fundhub.common.db import Connection
from fundhub.common.envelope import Envelope
from fundhub.common.logging import correlation
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import (
    BANK_INFLOW,
    BANK_SUSPENSE,
    DEDUCTION_CLEARING,
    Balance,
    InsufficientFunds,
    JournalEntry,
    apply_entry,
    new_entry_id,
    system_account,
)

log = structlog.get_logger(__name__)

CONSUMER = "notify-ingest"
_SUSPENSE_PREFIX = system_account(BANK_SUSPENSE, "")
EVENT_TRANSFER_APPLIED = "bank.transfer.applied"


@dataclass(frozen=True)
class Suspended:
    """A credit held in suspense: the account the bank named may no longer take money."""

    message: TransferMessage
    account_id: str
    holder: str
    holder_state: str
    held_in: str


@dataclass
class BatchResult:
    applied: int = 0
    stale: int = 0
    duplicates: int = 0
    rejected: list[tuple[TransferMessage, str]] = field(default_factory=list)
    suspended: list[Suspended] = field(default_factory=list)


@dataclass
class _Work:
    """What the batch decided, gathered before one round of writes."""

    positions: dict[store.RecordKey, RecordPosition]
    balances: dict[str, Balance]
    closed: Mapping[str, tuple[str, str]]
    entries: list[JournalEntry] = field(default_factory=list)
    entry_correlations: list[str | None] = field(default_factory=list)
    records: dict[store.RecordKey, store.RecordWrite] = field(default_factory=dict)
    notifications: list[tuple[str, str, str, str | None, Any, str, Any]] = field(
        default_factory=list
    )
    events: list[tuple[str, str | None, Envelope]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    exceptions: list[tuple[str, str, str, str, str, str, str, int]] = field(default_factory=list)


async def apply_transfer_notifications(
    conn: Connection,
    topics: Topics,
    messages: list[TransferMessage],
    closed_accounts: ClosedAccounts,
) -> BatchResult:
    """Run inside the caller's transaction; the caller commits Kafka offsets after it commits."""
    result = BatchResult()
    # One round trip claims the ids, creates accounts on first sight and locks the records
    # and balances. It does so for the whole batch; duplicates are dropped afterwards.
    currencies = {m.notice.currency for m in messages}
    purposes = (BANK_INFLOW, DEDUCTION_CLEARING, BANK_SUSPENSE)
    system_ids = [system_account(p, c) for c in currencies for p in purposes]
    claimed, *_, balance_rows, record_rows = await db.run_together(
        conn,
        [
            inbox.claim_step(CONSUMER, [m.message_id for m in messages]),
            *ledger_store.ensure_and_lock_steps(
                [(m.notice.in_acct_no, m.notice.currency, m.notice.in_acct_name) for m in messages],
                system_ids,
            ),
            store.lock_records_step([(m.app_id, m.notice.record_id) for m in messages]),
        ],
    )
    fresh, result.duplicates = inbox.fresh_items(
        messages, lambda m: m.message_id, {r["message_id"] for r in claimed}
    )
    if not fresh:
        return result
    positions = store.positions_from(record_rows)
    # Who may still take money is read once the balances are locked, in a statement of its
    # own: a close deciding meanwhile either committed before (seen here) or waits for this
    # transaction on the balance's lock (and sees the credit).
    first_seen = {
        m.notice.in_acct_no
        for m in fresh
        if (m.app_id, m.notice.record_id) not in positions
        and target_state(m.notice) is not RecordState.REVERSAL_NOTICE
    }
    work = _Work(
        positions=positions,
        balances=ledger_store.balances_from(balance_rows),
        closed=await closed_accounts.closed(conn, sorted(first_seen)) if first_seen else {},
    )
    for message in fresh:
        with correlation(message.correlation_id):
            _apply_one(work, topics, message, result)

    # Every write of the batch in one statement: one round trip, then the commit.
    await db.write_together(
        conn,
        [
            *ledger_store.entry_writes(work.entries, work.entry_correlations),
            *ledger_store.balance_writes(work.balances[a] for a in sorted(work.touched)),
            *store.record_writes(list(work.records.values())),
            *store.exception_writes(work.exceptions),
            *store.notification_writes(work.notifications),
            *outbox.outbox_writes(work.events),
        ],
        notify=outbox.LEDGER_CHANNEL if work.events else None,
    )
    return result


def _apply_one(work: _Work, topics: Topics, message: TransferMessage, result: BatchResult) -> None:
    notice = message.notice
    key = (message.app_id, notice.record_id)
    current = work.positions.get(key)
    # A known record keeps the account it was first credited to; the decision checks the notice.
    account_id = current.account_id if current else notice.in_acct_no
    holder = None if current else work.closed.get(account_id)
    if holder is not None:
        account_id = system_account(BANK_SUSPENSE, notice.currency)
    if current is not None and current.account_id.startswith(_SUSPENSE_PREFIX):
        # The suspense is a system account: it keeps no balance row and may go below zero.
        account = Balance(current.account_id, current.currency, allow_negative=True)
    elif holder is not None:
        account = Balance(account_id, notice.currency, allow_negative=True)
    else:
        account = work.balances[account_id]
    log_ctx = {"record_id": notice.record_id, "message_id": message.message_id}
    if account.currency != notice.currency:
        reason = f"currency {notice.currency} does not match account {account.currency}"
        result.rejected.append((message, reason))
        work.notifications.append(_notification_row(message, "rejected"))
        return
    decision = decide(current, notice, account, new_entry_id())
    if decision.outcome == "stale" or decision.position is None:
        result.stale += 1
        log.info("transfer_notice_stale", note=decision.note, **log_ctx)
        work.notifications.append(_notification_row(message, "stale"))
        return
    if decision.entry is not None:
        try:
            updated = apply_entry(work.balances, decision.entry)
        except InsufficientFunds as exc:  # the domain never asks for more than is there
            result.rejected.append((message, f"ledger refused: {exc}"))
            work.notifications.append(_notification_row(message, "rejected"))
            return
        work.balances.update(updated)
        work.touched.update(updated)
        work.entries.append(decision.entry)
        work.entry_correlations.append(message.correlation_id)
    work.positions[key] = decision.position
    if holder is not None and decision.entry is not None:
        _suspend(work, message, holder, account_id, result)
    previous = work.records.get(key)
    work.records[key] = store.RecordWrite(
        app_id=message.app_id,
        record_id=notice.record_id,
        position=decision.position,
        fields=notice.to_record_fields(),
        applied=(previous.applied if previous else 0) + 1,
    )
    work.notifications.append(_notification_row(message, "applied"))
    work.events.append(
        (topics.ledger_events, account_id, _applied_event(message, decision.position))
    )
    result.applied += 1
    # Per notice at debug: bank_notifications keeps the audit trail of every one.
    log.debug(
        "transfer_notice_applied",
        state=decision.position.state.value,
        account_id=account_id,
        entry_id=decision.entry.entry_id if decision.entry else None,
        note=decision.note or None,
        **log_ctx,
    )


def _suspend(
    work: _Work,
    message: TransferMessage,
    holder: tuple[str, str],
    held_in: str,
    result: BatchResult,
) -> None:
    notice = message.notice
    work.exceptions.append(
        (message.app_id, notice.record_id, notice.in_acct_no, holder[0], holder[1], held_in,
         notice.currency, notice.trans_amount)
    )  # fmt: skip
    result.suspended.append(Suspended(message, notice.in_acct_no, holder[0], holder[1], held_in))


def _notification_row(
    message: TransferMessage, outcome: str
) -> tuple[str, str, str, str | None, Any, str, Any]:
    return (
        message.message_id,
        message.app_id,
        str(message.params.get("method", "")),
        message.notice.record_id,
        message.params,
        outcome,
        message.received_at,
    )


def _applied_event(message: TransferMessage, position: RecordPosition) -> Envelope:
    return Envelope(
        type=EVENT_TRANSFER_APPLIED,
        correlation_id=message.correlation_id,
        data={
            "appId": message.app_id,
            "recordId": message.notice.record_id,
            "accountId": position.account_id,
            "currency": position.currency,
            "state": position.state.value,
            "transAmount": position.trans_amount,
            "heldAvailable": position.held_available,
            "heldFrozen": position.held_frozen,
            "deductedAmount": position.deducted_amount,
            "reversedAmount": position.reversed_amount,
            "sourceMessageId": message.message_id,
        },
    )
