"""The audit-writer's handler for the shared consumer loop: entries from ``audit.v1`` appended
to the chain, each once (the inbox), in the batch's transaction."""

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
ENTRY_TYPE = "audit.entry"


def decode(raw: bytes | None) -> AuditEntry:
    envelope = open_envelope(raw)
    if envelope.type != ENTRY_TYPE:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    try:
        entry = AuditEntry.from_json(envelope.data)
        canonical(entry.to_json())  # what the chain will hash must be JSON
    except (KeyError, TypeError, ValueError, orjson.JSONEncodeError) as exc:
        raise PoisonMessage(f"not an audit entry: {exc}") from exc
    return entry


def audit_handler() -> Handler:
    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode)
        fresh, _ = await take_fresh(conn, CONSUMER, [e for _, e in decoded], lambda e: e.id)
        await append(conn, fresh)
        return BatchOutcome(poison=poison)

    return handle
