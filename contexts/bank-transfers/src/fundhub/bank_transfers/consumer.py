"""The transfer-notify handler of the shared consumer loop: decode, apply, park, measure."""

from __future__ import annotations

import time

import structlog
from prometheus_client import Counter, Histogram

from fundhub.bank_transfers.apply import apply_transfer_notifications
from fundhub.bank_transfers.messages import decode_transfer_message
from fundhub.bank_transfers.ports import ClosedAccounts
from fundhub.common.clock import utcnow
from fundhub.common.consumer import BatchOutcome, Handler, Record, decode_all
from fundhub.common.db import Connection
from fundhub.common.topics import Topics

log = structlog.get_logger(__name__)

MESSAGES = Counter(
    "fundhub_notify_ingest_messages_total", "Transfer notifications by outcome", ["outcome"]
)
BATCH_SECONDS = Histogram(
    "fundhub_notify_ingest_batch_seconds",
    "Time to apply one batch, database commit included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACCEPT_TO_COMMIT = Histogram(
    "fundhub_notify_ingest_accept_to_commit_seconds",
    "From the gateway's acceptance of a notification to its ledger commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ALERTS = Counter(
    "fundhub_notify_ingest_alerts_total",
    "Transfers kept as exceptions for reconciliation, by reason",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "fundhub_notify_ingest_batch_size",
    "Messages per batch",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)


def transfer_notify_handler(topics: Topics, closed_accounts: ClosedAccounts) -> Handler:
    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        started = time.perf_counter()
        decoded, poison = decode_all(records, decode_transfer_message)
        messages = [m for _, m in decoded]
        result = await apply_transfer_notifications(conn, topics, messages, closed_accounts)
        by_id = {m.message_id: r for r, m in decoded}
        poison.extend((by_id[m.message_id], reason) for m, reason in result.rejected)

        def measure() -> None:
            BATCH_SECONDS.observe(time.perf_counter() - started)
            BATCH_SIZE.observe(len(records))
            committed = utcnow()
            for message in messages:
                ACCEPT_TO_COMMIT.observe((committed - message.received_at).total_seconds())
            MESSAGES.labels("applied").inc(result.applied)
            MESSAGES.labels("stale").inc(result.stale)
            MESSAGES.labels("duplicate").inc(result.duplicates)
            MESSAGES.labels("dead-lettered").inc(len(poison))
            for held in result.suspended:
                ALERTS.labels("account-closed").inc()
                log.error(
                    "transfer_alert",
                    reason="account-closed",
                    record_id=held.message.notice.record_id,
                    account_id=held.account_id,
                    holder=held.holder,
                    holder_state=held.holder_state,
                    held_in=held.held_in,
                    amount=held.message.notice.trans_amount,
                    correlation_id=held.message.correlation_id,
                )
            log.info(
                "batch_applied",
                size=len(records),
                applied=result.applied,
                stale=result.stale,
                duplicates=result.duplicates,
                dead_lettered=len(poison),
            )

        return BatchOutcome(poison=poison, after_commit=measure)

    return handle
