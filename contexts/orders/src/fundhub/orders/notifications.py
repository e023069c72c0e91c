"""The channels' verified notifications, applied to orders and refunds: one transaction per
consumer batch (notify-ingest).

Each notification is claimed in the inbox under ``ChannelEvent.message_id()`` (the channel's
own notification id, stable across its retries), so a duplicate, a retry or a redelivery after
a crash is nothing; what is fresh goes through ``states.on_event`` in arrival order (one order's
notifications share a partition: its out_trade_no is the key), against the rows locked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fundhub.channels.events import EventKind
from fundhub.common import inbox, outbox
from fundhub.common.db import Connection
from fundhub.common.topics import Topics
from fundhub.ledger.rules import new_entry_id
from fundhub.orders import states
from fundhub.orders.changes import Source, lock_changes
from fundhub.orders.messages import EventMessage

CONSUMER = "notify-ingest.channel-events"


@dataclass
class Tally:
    applied: int = 0
    stale: int = 0
    exceptions: int = 0
    duplicates: int = 0


async def apply_channel_events(
    conn: Connection, topics: Topics, messages: list[EventMessage]
) -> Tally:
    """Run inside the caller's transaction."""
    tally = Tally()
    fresh, tally.duplicates = await inbox.take_fresh(
        conn, CONSUMER, messages, lambda m: m.message_id
    )
    if not fresh:
        return tally
    changes = await lock_changes(
        conn,
        topics,
        {m.event.out_trade_no for m in fresh},
        {m.event.out_refund_no for m in fresh if m.event.out_refund_no},
    )
    for message in fresh:
        event = message.event
        order = changes.order(event.out_trade_no)
        refund = None
        if event.kind is EventKind.REFUND:
            refund = changes.refund(event.out_refund_no, event.out_trade_no)
        move = states.on_event(order, refund, event, new_entry_id())
        changes.apply(
            move,
            message.correlation_id,
            event.out_trade_no,
            refund.refund_id if refund else None,
            Source(message.message_id, event),
        )
        if move.outcome == "applied":
            tally.applied += 1
        elif move.outcome == "exception":
            tally.exceptions += 1
        else:
            tally.stale += 1
    await changes.flush(conn, outbox.LEDGER_CHANNEL)
    return tally
