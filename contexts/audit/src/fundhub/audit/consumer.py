"""The audit-writer's handler for the shared consumer loop: entries from ``audit.v1`` appended
to the chain, each once (the inbox), in the batch's transaction."""

from __future__ import annotations

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
        return AuditEntry.from_json(envelope.data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonMessage(f"not an audit entry: {exc}") from exc


def audit_handler() -> Handler:
    async def handle(conn: Connection, records: list[Record]) -> BatchOutcome:
        decoded, poison = decode_all(records, decode)
        fresh, _ = await take_fresh(conn, CONSUMER, [e for _, e in decoded], lambda e: e.id)
        await append(conn, fresh)
        return BatchOutcome(poison=poison)

    return handle
