"""The payouts handlers of the shared consumer loop: the gateway's commands, the bank's results."""

from __future__ import annotations

from fundhub.common.config import Settings
from fundhub.common.consumer import BatchOutcome, Handler, Record, decode_all
from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.payouts import commands, results
from fundhub.payouts.messages import decode_command, decode_result
from fundhub.payouts.metrics import MESSAGES
from fundhub.payouts.submitter import Submitter


def command_handler(settings: Settings, names: Topics, submitter: Submitter) -> Handler:
    """Freeze each new payout (or fail it), then, once committed, send the batch to the bank."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_command)
        accepted = await commands.accept_payouts(conn, names, settings, [c for _, c in decoded])
        MESSAGES.labels("commands", "accepted").inc(len(accepted.to_submit))
        MESSAGES.labels("commands", "failed").inc(accepted.failed)
        MESSAGES.labels("commands", "duplicate").inc(accepted.duplicates)
        MESSAGES.labels("commands", "dead-lettered").inc(len(poison))
        to_submit = accepted.to_submit
        return BatchOutcome(poison=poison, after_commit=lambda: submitter.submit_later(to_submit))

    return handle


def result_handler(settings: Settings, names: Topics) -> Handler:
    """Settle payouts from the bank's verified results (of the app each payout went through)."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_result)
        settled = await results.apply_bank_results(
            conn, names, [m for _, m in decoded], settings.bank_app_id
        )
        MESSAGES.labels("results", "applied").inc(settled.applied)
        MESSAGES.labels("results", "ignored").inc(settled.ignored)
        MESSAGES.labels("results", "duplicate").inc(settled.duplicates)
        MESSAGES.labels("results", "dead-lettered").inc(len(poison))
        return BatchOutcome(poison=poison)

    return handle
