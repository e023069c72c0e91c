"""The audit-writer's handler for the shared consumer loop: entries from ``audit.v1`` appended
to the chain, each once (the inbox, by entry id: a batch sent again after a failed send may
repeat some), in the batch's transaction."""

from __future__ import annotations

import orjson

from fundhub.audit.chain import canonical
from fundhub.audit.entry import AuditEntry
from fundhub.audit.store import append
from fundhub.common.consumer import (
    BatchOutcome,
    Handler,
    PoisonMessage,
    Record,
    decode_all,
    open_envelope,
)
from fundhub.common.db import Connection
from fundhub.common.inbox import take_fresh

CONSUMER = "audit-writer"
# One message carries the entries of the requests answered together (``data.entries``): a
# Kafka send per request cost the gateway as much CPU as the request itself.
ENTRIES_TYPE = "audit.entries"


def decode(raw: bytes | None) -> list[AuditEntry]:
    envelope = open_envelope(raw)
    if envelope.type != ENTRIES_TYPE:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    try:
        entries = [AuditEntry.from_json(data) for data in envelope.data["entries"]]
        for entry in entries:
            canonical(entry.to_json())  # what the chain will hash must be JSON
    except (KeyError, TypeError, ValueError, orjson.JSONEncodeError) as exc:
        raise PoisonMessage(f"not audit entries: {exc}") from exc
    return entries


def audit_handler() -> Handler:
    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode)
        entries = [entry for _, batch in decoded for entry in batch]
        fresh, _ = await take_fresh(conn, CONSUMER, entries, lambda e: e.id)
        await append(conn, fresh)
        return BatchOutcome(poison=poison)

    return handle
