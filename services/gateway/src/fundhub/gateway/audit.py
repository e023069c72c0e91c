"""The gateway's audit observer: every answer's entry is made durable before the answer leaves.

Durable means acknowledged by Kafka (acks=all) on ``audit.v1``; the audit-writer appends it to
the hash chain in PostgreSQL. Kafka rather than a row in the request's own transaction: the hot
routes then pay one producer send, which the client batches with concurrent ones (linger), not
a database round trip and a lock on the chain's head; and the writer is the chain's only
serializer. An entry that cannot be made durable turns the answer into a 503 (the request's
effect may stand, as with any lost answer, and the caller retries with the same request id).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog
from fastapi import FastAPI

from fundhub.audit.consumer import ENTRY_TYPE
from fundhub.audit.entry import KIND_HTTP, AuditEntry, error_code_of, http_params
from fundhub.common.clock import utcnow
from fundhub.common.envelope import Envelope
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.ids import random_uuid
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed
from fundhub.common.topics import Topics
from fundhub.gateway.edge import Exchange, Observer

log = structlog.get_logger(__name__)

# Probes and scrapes, not requests of anyone's business.
UNAUDITED = frozenset({"/healthz", "/readyz", "/metrics"})


def entry_of(exchange: Exchange, entry_id: str) -> AuditEntry:
    scope = exchange.scope
    key = scope.get("state", {}).get("api_key")
    client = scope.get("client")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    return AuditEntry(
        id=entry_id,
        at=utcnow(),
        kind=KIND_HTTP,
        actor=key.key_id if key is not None else None,
        source=client[0] if client else "unknown",
        route=f"{scope['method']} {exchange.route}",
        params=http_params(scope["path"], scope.get("query_string", b""), headers, exchange.body),
        status=exchange.answer.status,
        error_code=error_code_of(exchange.answer.body),
        latency_ms=round((time.perf_counter() - exchange.started) * 1000, 3),
        correlation_id=exchange.correlation_id,
    )


def audit_observers(app: FastAPI, names: Topics, enabled: bool) -> Sequence[Observer]:
    """The observer, reading the publisher the app's lifespan made; none when audit is off."""
    if not enabled:
        return ()

    async def record(exchange: Exchange) -> None:
        if exchange.route in UNAUDITED:
            return
        entry = entry_of(exchange, random_uuid())
        envelope = Envelope(
            id=entry.id,
            type=ENTRY_TYPE,
            correlation_id=exchange.correlation_id,
            data=entry.to_json(),
        )
        publisher: KafkaPublisher = app.state.publisher
        try:
            await publisher.send_many(
                [OutgoingMessage.of(names.audit, envelope, exchange.correlation_id)]
            )
        except PublishFailed as exc:
            log.error("audit_publish_failed", error=str(exc))
            raise FundhubError(
                ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE.default_message
            ) from exc

    return (record,)
