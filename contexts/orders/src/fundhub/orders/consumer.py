"""The orders handlers of the shared consumer loop: the channels' verified notifications
(notify-ingest) and the refund commands (payment-worker)."""

from __future__ import annotations

from fundhub.common.consumer import BatchOutcome, Handler, Record, decode_all
from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.orders.messages import RefundCommand, decode_command, decode_event
from fundhub.orders.metrics import MESSAGES
from fundhub.orders.notifications import apply_channel_events
from fundhub.orders.refunds import RefundSender, hold_refunds


def channel_event_handler(names: Topics) -> Handler:
    """Post each payment once, finish each refund once, keep what matches nothing."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_event)
        tally = await apply_channel_events(conn, names, [m for _, m in decoded])

        def after_commit() -> None:
            MESSAGES.labels("channel-events", "applied").inc(tally.applied)
            MESSAGES.labels("channel-events", "stale").inc(tally.stale)
            MESSAGES.labels("channel-events", "exception").inc(tally.exceptions)
            MESSAGES.labels("channel-events", "duplicate").inc(tally.duplicates)
            MESSAGES.labels("channel-events", "dead-lettered").inc(len(poison))

        return BatchOutcome(poison=poison, after_commit=after_commit)

    return handle


def refund_command_handler(names: Topics, sender: RefundSender) -> Handler:
    """Take each new refund's money (or fail it), then, once committed, send it to the
    channel. Other commands on the topic (settlement's) are not this handler's."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_command)
        commands = [c for _, c in decoded if isinstance(c, RefundCommand)]
        held = await hold_refunds(conn, names, commands) if commands else None
        to_send = held.to_send if held else []

        def after_commit() -> None:
            MESSAGES.labels("refund-commands", "held").inc(len(to_send))
            if held is not None:
                MESSAGES.labels("refund-commands", "failed").inc(held.failed)
                MESSAGES.labels("refund-commands", "duplicate").inc(held.duplicates)
            MESSAGES.labels("refund-commands", "other").inc(len(decoded) - len(commands))
            MESSAGES.labels("refund-commands", "dead-lettered").inc(len(poison))
            sender.send_later(to_send)

        return BatchOutcome(poison=poison, after_commit=after_commit)

    return handle
