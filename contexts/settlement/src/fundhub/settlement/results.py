"""The depository's signed split results (verified by the gateway), one transaction per batch:
the handler of the shared consumer loop in payment-worker."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from fundhub.common import inbox
from fundhub.common.consumer import BatchOutcome, Handler, Record, decode_all
from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.settlement import states
from fundhub.settlement.completion import lock_batch
from fundhub.settlement.messages import SplitResultMessage, decode_split_result
from fundhub.settlement.metrics import ALERTS, RESULTS
from fundhub.settlement.store import to_settlement

log = structlog.get_logger(__name__)

CONSUMER = "payment-worker.split-results"


@dataclass
class Applied:
    applied: int = 0
    ignored: int = 0
    duplicates: int = 0


async def apply_split_results(
    conn: Connection, topics: Topics, messages: list[SplitResultMessage]
) -> Applied:
    """Inside the caller's transaction. Duplicates stop at the inbox; stale and contradicting
    reports reach ``states.report``, which moves nothing for them. A result counts only from
    the bank app the instruction was sent through (``bank_app_id`` on the settlement)."""
    done = Applied()
    fresh, done.duplicates = await inbox.take_fresh(
        conn, CONSUMER, messages, lambda m: m.message_id
    )
    if not fresh:
        return done
    batch = await lock_batch(conn, topics, [m.settlement_id for m in fresh])
    for message in fresh:
        row = batch.rows.get(message.settlement_id)
        if row is None:
            ALERTS.labels("unknown-settlement").inc()
            log.error("split_result_for_unknown_settlement", settlement_id=message.settlement_id)
            done.ignored += 1
            continue
        if message.app_id != row["bank_app_id"]:
            ALERTS.labels("foreign-bank-app").inc()
            log.error(
                "split_result_from_another_bank_app",
                settlement_id=message.settlement_id,
                app_id=message.app_id,
                expected_app_id=row["bank_app_id"],
            )
            done.ignored += 1
            continue
        transition = states.report(to_settlement(row), message.report, new_entry_id())
        if batch.apply(message.settlement_id, transition, message.correlation_id):
            done.applied += 1
        else:
            done.ignored += 1
    await batch.flush(conn)
    return done


def split_result_handler(topics: Topics) -> Handler:
    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_split_result)
        done = await apply_split_results(conn, topics, [m for _, m in decoded])
        RESULTS.labels("applied").inc(done.applied)
        RESULTS.labels("ignored").inc(done.ignored)
        RESULTS.labels("duplicate").inc(done.duplicates)
        RESULTS.labels("dead-lettered").inc(len(poison))
        return BatchOutcome(poison=poison)

    return handle
