"""The bank's payout results (verified by the gateway), one transaction per batch."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.payouts import states, store
from fundhub.payouts.messages import ResultMessage
from fundhub.payouts.metrics import ALERTS
from fundhub.payouts.settlement import lock_fresh

log = structlog.get_logger(__name__)

CONSUMER = "payment-worker.results"


@dataclass
class Settled:
    applied: int = 0
    ignored: int = 0
    duplicates: int = 0


async def apply_bank_results(
    conn: Connection, topics: Topics, messages: list[ResultMessage], default_app_id: str
) -> Settled:
    """Run inside the caller's transaction. Duplicates (same content) stop at the inbox; stale
    and contradicting reports reach ``states.settle``, which moves nothing for them.

    A result counts only from the bank app the payout was sent through: a signature proves
    which app spoke, not that it may speak for this payout (another registered app could
    otherwise return a paid payout and credit the payer). ``default_app_id`` stands for payouts
    accepted before the app was recorded on them."""
    settled = Settled()
    fresh, settled.duplicates, settlement = await lock_fresh(conn, topics, CONSUMER, messages)
    if not fresh:
        return settled
    rows = settlement.rows
    for message in fresh:
        row = rows.get(message.pay_id)
        if row is None or not (row["held"] or row["state"] != states.PayoutState.PROCESSING):
            # A result for a payout we never sent (or never froze): money may be wrong.
            ALERTS.labels("unknown-payout").inc()
            log.error("payout_result_for_unknown_payout", pay_id=message.pay_id)
            settled.ignored += 1
            continue
        expected_app = row.get("bank_app_id") or default_app_id
        if message.app_id != expected_app:
            ALERTS.labels("foreign-bank-app").inc()
            log.error(
                "payout_result_from_another_bank_app",
                pay_id=message.pay_id,
                app_id=message.app_id,
                expected_app_id=expected_app,
            )
            settled.ignored += 1
            continue
        transition = states.settle(store.to_payout(row), message.result, new_entry_id())
        if settlement.apply(message.pay_id, transition, message.correlation_id):
            settled.applied += 1
        else:
            settled.ignored += 1
    await settlement.flush(conn)
    return settled
