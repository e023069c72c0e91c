"""The dispatcher's intake: callback messages become ``callback_deliveries`` rows.

Each kind that arrives on ``callbacks.v1`` (``payout.callback``: a payout's final state;
``merchant.callback``: a merchant's change, its ``state`` the event's id; ``order.callback``: an
order's payment, refund or settlement reaching a final state) becomes the same row: a subject,
its state, where it goes, whose webhook secret signs it and the body; the sender does not tell
them apart.

A handler of the shared consumer loop: one transaction per polled batch (inbox ids and rows
together), offsets committed after it; a message that can never become a row is dead-lettered,
so the partition never stops.
"""

from __future__ import annotations

import asyncio

import orjson
import structlog
from prometheus_client import Counter

from fundhub.common.consumer import (
    BatchOutcome,
    Handler,
    PoisonMessage,
    Record,
    decode_all,
    open_envelope,
)
from fundhub.common.db import Connection
from fundhub.webhooks.store import NewDelivery, insert_deliveries

log = structlog.get_logger(__name__)

INTAKE = Counter(
    "fundhub_callback_dispatcher_messages_total", "callback messages by outcome", ["outcome"]
)
MESSAGE_TYPE = "payout.callback"
# Each callback type and the field naming its subject.
SUBJECT_FIELDS = {
    MESSAGE_TYPE: "payId",
    "merchant.callback": "subjectId",
    "order.callback": "subjectId",
}


def decode_callback(raw: bytes | None) -> NewDelivery:
    envelope = open_envelope(raw)
    subject = SUBJECT_FIELDS.get(envelope.type)
    if subject is None:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    data = envelope.data
    fields = {name: data.get(name) for name in (subject, "state", "url", "keyId")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise PoisonMessage(f"{name}: must be a non-empty string")
    body = data.get("body")
    if not isinstance(body, dict):
        raise PoisonMessage("body: must be a JSON object")
    return NewDelivery(
        message_id=envelope.id,
        pay_id=str(fields[subject]),
        state=str(fields["state"]),
        url=str(fields["url"]),
        key_id=str(fields["keyId"]),
        body=orjson.dumps(body),
    )


def callback_handler(wake: asyncio.Event) -> Handler:
    """Store each new callback as a delivery; once committed, wake the sender."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_callback)
        deliveries = [d for _, d in decoded]
        created = await insert_deliveries(conn, deliveries) if deliveries else 0

        def after_commit() -> None:
            INTAKE.labels("created").inc(created)
            INTAKE.labels("duplicate").inc(len(deliveries) - created)
            INTAKE.labels("dead-lettered").inc(len(poison))
            if created:
                wake.set()
                log.info("deliveries_created", created=created, batch=len(records))

        return BatchOutcome(poison=poison, after_commit=after_commit)

    return handle
