"""Accepting payouts: the ``payout.requested`` commands of one batch, in one transaction.

Commands are keyed by the payer account, so all payouts of one account arrive in order on one
partition; taken in that order against the locked balance, exactly those that fit are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import structlog

from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.payouts import states, store
from fundhub.payouts.messages import PayoutCommand
from fundhub.payouts.settlement import lock_fresh
from fundhub.payouts.states import PayoutState, Transition

log = structlog.get_logger(__name__)

CONSUMER = "payment-worker.commands"
UNKNOWN_PAYER = "payer account unknown"


@dataclass
class Accepted:
    """What the batch froze (to send to the bank once committed) and how many it skipped."""

    to_submit: list[store.PayoutRow] = field(default_factory=list)
    failed: int = 0
    duplicates: int = 0


async def accept_payouts(
    conn: Connection, topics: Topics, settings: Settings, commands: list[PayoutCommand]
) -> Accepted:
    """Run inside the caller's transaction; the caller submits ``to_submit`` after the commit."""
    accepted = Accepted()
    fresh, accepted.duplicates, settlement = await lock_fresh(conn, topics, CONSUMER, commands)
    if not fresh:
        return accepted
    rows = settlement.rows
    now = utcnow()
    first_poll = now + timedelta(seconds=settings.payout_poll_base_s)
    deadline = now + timedelta(seconds=settings.payout_result_deadline_s)
    for command in fresh:
        row = rows.get(command.pay_id)
        if row is None:
            log.error("payout_command_without_payout", pay_id=command.pay_id)
            continue
        if row["state"] != PayoutState.PROCESSING or row["held"]:
            accepted.duplicates += 1
            continue
        payer = settlement.balances.get(row["payer_account_id"])
        if payer is None:
            transition = Transition(
                replace(
                    store.to_payout(row),
                    state=PayoutState.FAILED,
                    error_code=states.INVALID_PARAMETER,
                    message=UNKNOWN_PAYER,
                ),
                None,
                "applied",
                "new -> FAILED: payer account unknown",
            )
        else:
            transition = states.accept(
                row["pay_id"], payer, row["amount"], row["currency"], new_entry_id()
            )
        settlement.apply(row["pay_id"], transition, command.correlation_id)
        if transition.entry is None:
            accepted.failed += 1
            continue
        # The gateway already set the first look and the deadline from the acceptance time:
        # leaving them as they are keeps this update HOT (next_poll_at is indexed).
        settlement.touch(
            row["pay_id"],
            held=True,
            next_poll_at=row["next_poll_at"] or first_poll,
            deadline_at=row["deadline_at"] or deadline,
            # The app the bank will answer through: only its signed results settle the payout.
            bank_app_id=settings.bank_app_id,
        )
        accepted.to_submit.append(dict(row))
    await settlement.flush(conn)
    return accepted
