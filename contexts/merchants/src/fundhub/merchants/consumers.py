"""The merchants handlers of the shared consumer loop: the API's requests for the depository,
and the depository's signed results (verified by the gateway)."""

from __future__ import annotations

from collections.abc import Sequence

from fundhub.common import inbox
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchOutcome, Handler, Record, decode_all
from fundhub.common.db import Connection, Row
from fundhub.common.topics import Topics
from fundhub.merchants import changes, store
from fundhub.merchants.messages import RequestCommand, decode_command, decode_result
from fundhub.merchants.metrics import MESSAGES
from fundhub.merchants.submitter import Submitter

COMMANDS_CONSUMER = "payment-worker.merchant-commands"
RESULTS_CONSUMER = "payment-worker.merchant-results"


async def take_requests(
    conn: Connection, commands: Sequence[RequestCommand], bank_app_id: str
) -> tuple[list[Row], int]:
    """Inside the batch's transaction: the queued requests of new commands, each noted as
    going through ``bank_app_id``; and how many commands were duplicates or already sent."""
    fresh, duplicates = await inbox.take_fresh(
        conn, COMMANDS_CONSUMER, commands, lambda c: c.message_id
    )
    rows = await store.lock_requests(conn, [c.request_id for c in fresh])
    queued = [r for r in rows if r["state"] == "QUEUED"]
    await store.note_app(conn, [r["request_id"] for r in queued], bank_app_id)
    return [dict(r) for r in queued], duplicates + len(fresh) - len(queued)


def command_handler(settings: Settings, submitter: Submitter) -> Handler:
    """Take each new request, then, once committed, send it to the depository."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_command)
        rows, skipped = await take_requests(conn, [c for _, c in decoded], settings.bank_app_id)
        MESSAGES.labels("commands", "taken").inc(len(rows))
        MESSAGES.labels("commands", "skipped").inc(skipped)
        MESSAGES.labels("commands", "dead-lettered").inc(len(poison))
        return BatchOutcome(poison=poison, after_commit=lambda: submitter.submit_later(rows))

    return handle


def result_handler(settings: Settings, names: Topics) -> Handler:
    """Apply the depository's results (each only from the app its request went through)."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_result)
        messages = [m for _, m in decoded]
        fresh, duplicates = await inbox.take_fresh(
            conn, RESULTS_CONSUMER, messages, lambda m: m.message_id
        )
        MESSAGES.labels("results", "duplicate").inc(duplicates)
        for message in sorted(fresh, key=lambda m: m.result.request_id):
            result = message.result
            outcome = await changes.settle(
                conn,
                names,
                result.request_id,
                result.status,
                result.reason,
                result.member_no,
                message.correlation_id,
                from_app=message.app_id,
                default_app=settings.bank_app_id,
                member_ext_id=result.member_ext_id,
            )
            MESSAGES.labels("results", outcome).inc()
        MESSAGES.labels("results", "dead-lettered").inc(len(poison))
        return BatchOutcome(poison=poison)

    return handle
