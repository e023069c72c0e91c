"""Actions on a discrepancy, each in one transaction with its history row: propose an
adjustment, approve it (the balanced ledger entry is posted then), carry over, write off,
re-open. The rules are ``discrepancy_states``; this module locks, posts and records.

The adjustment moves money between the named account's available bucket and the
reconciliation adjustments account (a system account, one per currency), through the ledger's
own rules (a customer account cannot go below zero) and store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fundhub.common.db import Connection, json_text, write_together
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import (
    Bucket,
    InsufficientFunds,
    JournalEntry,
    apply_entry,
    move,
    new_entry_id,
    system_account,
)
from fundhub.reconciliation.discrepancy_states import (
    Action,
    Adjustment,
    InvalidAction,
    State,
    check_reason,
    next_state,
)

CURRENCY = "CNY"
ADJUSTMENTS = system_account("recon-adjustments", CURRENCY)
ENTRY_KIND = "reconciliation_adjustment"


class DiscrepancyNotFound(LookupError):
    pass


class AdjustmentRefused(Exception):
    """The ledger refuses the adjustment (no such account, or not enough on it)."""


@dataclass(frozen=True, slots=True)
class Done:
    discrepancy_id: str
    action: Action
    from_state: State
    to_state: State
    entry_id: str | None


async def act(
    conn: Connection,
    discrepancy_id: str,
    action: Action,
    *,
    actor: str,
    reason: str = "",
    adjustment: Adjustment | None = None,
) -> Done:
    """Inside the caller's transaction (which it must commit for anything to hold)."""
    text = check_reason(reason, required=action in (Action.WRITE_OFF, Action.REOPEN))
    row = await conn.fetchrow(
        "SELECT state, proposal, proposed_by FROM recon_discrepancies "
        "WHERE discrepancy_id = $1 FOR UPDATE",
        discrepancy_id,
    )
    if row is None:
        raise DiscrepancyNotFound(discrepancy_id)
    state = State(row["state"])
    target = next_state(state, action, actor, row["proposed_by"])
    detail: dict[str, Any] | None = None
    entry_id: str | None = None
    proposal: dict[str, Any] | None = row["proposal"]
    proposed_by: str | None = row["proposed_by"]
    if action is Action.PROPOSE:
        if adjustment is None:
            raise InvalidAction("adjustment: an account and an amount are required")
        proposal = {"accountId": adjustment.account_id, "amountFen": adjustment.amount_fen}
        proposed_by = actor
        detail = proposal
    elif action is Action.APPROVE:
        assert proposal is not None
        approved = Adjustment(str(proposal["accountId"]), int(proposal["amountFen"]))
        entry_id = await _post(conn, discrepancy_id, approved, reason=text)
        detail = {**proposal, "entryId": entry_id, "proposedBy": proposed_by}
    elif action is Action.REOPEN and state is State.ADJUSTMENT_PROPOSED:
        detail = {"withdrawn": proposal, "proposedBy": proposed_by}
        proposal, proposed_by = None, None
    await conn.execute(
        "UPDATE recon_discrepancies SET state = $2, proposal = $3::text::jsonb, proposed_by = $4, "
        "entry_id = coalesce($5::uuid, entry_id), updated_at = now() WHERE discrepancy_id = $1",
        discrepancy_id,
        target.value,
        None if proposal is None else _json(proposal),
        proposed_by,
        entry_id,
    )
    await conn.execute(
        "INSERT INTO recon_actions (discrepancy_id, action, from_state, to_state, actor, reason, "
        "detail) VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
        discrepancy_id,
        action.value,
        state.value,
        target.value,
        actor,
        text,
        None if detail is None else _json(detail),
    )
    return Done(discrepancy_id, action, state, target, entry_id)


def _json(value: dict[str, Any]) -> str:
    return json_text(value)


async def _post(conn: Connection, discrepancy_id: str, adjustment: Adjustment, reason: str) -> str:
    kind = await conn.fetchval(
        "SELECT kind FROM accounts WHERE account_id = $1 AND currency = $2",
        adjustment.account_id,
        CURRENCY,
    )
    if kind is None:
        raise AdjustmentRefused(f"no {CURRENCY} account {adjustment.account_id}")
    amount = adjustment.amount_fen
    postings = (
        move(
            ADJUSTMENTS, Bucket.AVAILABLE, adjustment.account_id, Bucket.AVAILABLE, CURRENCY, amount
        )
        if amount > 0
        else move(
            adjustment.account_id,
            Bucket.AVAILABLE,
            ADJUSTMENTS,
            Bucket.AVAILABLE,
            CURRENCY,
            -amount,
        )
    )
    entry = JournalEntry(
        entry_id=new_entry_id(),
        kind=ENTRY_KIND,
        ref_type="recon_discrepancy",
        ref_id=discrepancy_id,
        postings=postings,
        description=reason[:200],
    )
    await ledger_store.ensure_accounts(conn, [], [ADJUSTMENTS])
    balances = await ledger_store.lock_balances(conn, [adjustment.account_id])
    try:
        changed = apply_entry(balances, entry)
    except InsufficientFunds as exc:
        raise AdjustmentRefused(str(exc)) from None
    await write_together(
        conn,
        [
            *ledger_store.entry_writes([entry], [discrepancy_id]),
            *ledger_store.balance_writes(changed.values()),
        ],
    )
    return entry.entry_id
