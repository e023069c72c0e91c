"""The dispatcher's intake: callback messages (``payout.callback``, ``order.callback``) become
``callback_deliveries`` rows, one per subject (a payout, an order, a refund) and state.

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
    "fundhub_callback_dispatcher_messages_total", "Callback messages by outcome", ["outcome"]
)
MESSAGE_TYPE = "payout.callback"
# Each callback type: the field naming its subject, and the query returning those of the given
# ids that exist. A callback about a subject that does not exist is a bug upstream (the
# messages come from the services' outboxes): it is dead-lettered, never sent.
SUBJECTS: dict[str, tuple[str, str]] = {
    MESSAGE_TYPE: ("payId", "SELECT pay_id AS id FROM payouts WHERE pay_id = ANY($1::text[])"),
    "order.callback": (
        "subjectId",
        "SELECT order_id AS id FROM orders WHERE order_id = ANY($1::text[])"
        " UNION ALL SELECT refund_id FROM order_refunds WHERE refund_id = ANY($1::text[])",
    ),
}


def decode_callback(raw: bytes | None) -> tuple[str, NewDelivery]:
    """The message's type and the delivery it asks for."""
    envelope = open_envelope(raw)
    known = SUBJECTS.get(envelope.type)
    if known is None:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    subject = known[0]
    data = envelope.data
    fields = {name: data.get(name) for name in (subject, "state", "url", "keyId")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise PoisonMessage(f"{name}: must be a non-empty string")
    body = data.get("body")
    if not isinstance(body, dict):
        raise PoisonMessage("body: must be a JSON object")
    return envelope.type, NewDelivery(
        message_id=envelope.id,
        pay_id=str(fields[subject]),
        state=str(fields["state"]),
        url=str(fields["url"]),
        key_id=str(fields["keyId"]),
        body=orjson.dumps(body),
    )


async def _of_known_subjects(
    conn: Connection, decoded: list[tuple[Record, tuple[str, NewDelivery]]]
) -> tuple[list[NewDelivery], list[tuple[Record, str]]]:
    """The deliveries whose subjects exist, and the records of the others, with the reason."""
    existing: set[str] = set()
    for message_type, (_, query) in SUBJECTS.items():
        ids = [d.pay_id for _, (t, d) in decoded if t == message_type]
        if ids:
            existing.update(r["id"] for r in await conn.fetch(query, ids))
    known: list[NewDelivery] = []
    unknown: list[tuple[Record, str]] = []
    for record, (message_type, delivery) in decoded:
        if delivery.pay_id in existing:
            known.append(delivery)
        else:
            unknown.append((record, f"{message_type}: no subject {delivery.pay_id}"))
    return known, unknown


def callback_handler(wake: asyncio.Event) -> Handler:
    """Store each new callback as a delivery; once committed, wake the sender."""

    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode_callback)
        deliveries, unknown = await _of_known_subjects(conn, decoded)
        poison.extend(unknown)
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
