"""The gateway's audit observer: every answer's entry is made durable before the answer leaves.

Durable means acknowledged by Kafka (acks=all) on ``audit.v1``; the audit-writer appends it to
the hash chain in PostgreSQL. Kafka rather than a row in the request's own transaction: the
audit-writer is then the chain's only serializer, and the hot routes pay no database round trip
nor a lock on the chain's head. The entries of requests answered at the same time go in one
message (``common.group_commit``: a batch forms while the previous send is in flight, and an
idle gateway sends each entry at once): a Kafka send per request had cost as much gateway CPU as
the request itself. A send costs the gateway 0.3 to 0.7 ms of CPU whatever it carries (the Kafka
client's own work, all Python), so sends start at most every ``audit_send_interval_s`` (25 ms):
when the broker answers faster than that, the next batch waits out the rest. That bounds the
CPU the sends take (40 a second at most) whatever the request rate; a lone entry after a quiet
spell goes at once. An entry that cannot be made durable turns the answer into a 503 (the
request's effect may stand, as with any lost answer; the caller retries the same request).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI

from fundhub.audit.consumer import ENTRIES_TYPE
from fundhub.audit.entry import KIND_HTTP, entry_json, error_code_of, http_params, kept_headers
from fundhub.common.clock import iso_utc_us_now
from fundhub.common.envelope import Envelope
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.group_commit import GroupCommit
from fundhub.common.ids import random_uuid
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed
from fundhub.common.topics import Topics
from fundhub.gateway.edge import Exchange, Observer

log = structlog.get_logger(__name__)

# Entries are about 1 KiB: a message well under the broker's 1 MiB limit.
MAX_ENTRIES_PER_MESSAGE = 200
# Probes and scrapes, not requests of anyone's business.
UNAUDITED = frozenset({"/healthz", "/readyz", "/metrics"})


def entry_of(exchange: Exchange, entry_id: str) -> dict[str, Any]:
    """The exchange's audit entry, as JSON (``audit.entry.entry_json``)."""
    scope = exchange.scope
    key = scope.get("state", {}).get("api_key")
    client = scope.get("client")
    return entry_json(
        id=entry_id,
        at=iso_utc_us_now(),
        kind=KIND_HTTP,
        actor=key.key_id if key is not None else None,
        source=client[0] if client else "unknown",
        route=f"{scope['method']} {exchange.route}",
        params=http_params(
            scope["path"],
            scope.get("query_string", b""),
            kept_headers(scope["headers"]),
            exchange.body,
        ),
        status=exchange.answer.status,
        error_code=error_code_of(exchange.answer.body),
        latency_ms=round((time.perf_counter() - exchange.started) * 1000, 3),
        correlation_id=exchange.correlation_id,
    )


def audit_observers(
    app: FastAPI, names: Topics, enabled: bool, send_interval_s: float = 0.0
) -> Sequence[Observer]:
    """The observer, reading the publisher the app's lifespan made; none when audit is off."""
    if not enabled:
        return ()

    async def publish(batch: list[dict[str, Any]]) -> list[PublishFailed | None]:
        """The entries of concurrent answers in one message: one send, one acknowledgement.
        A failed send fails the batch as a result, not by raising: group commit would retry
        each entry alone, one publish timeout after another, while Kafka is away."""
        envelope = Envelope(
            type=ENTRIES_TYPE, correlation_id=batch[0]["correlationId"], data={"entries": batch}
        )
        publisher: KafkaPublisher = app.state.publisher
        try:
            await publisher.send_many([OutgoingMessage.of(names.audit, envelope, envelope.id)])
        except PublishFailed as exc:
            log.error("audit_publish_failed", error=str(exc), entries=len(batch))
            return [exc] * len(batch)
        return [None] * len(batch)

    group: GroupCommit[dict[str, Any], PublishFailed | None] = GroupCommit(
        publish,
        lambda entry: entry["id"],
        max_batch=MAX_ENTRIES_PER_MESSAGE,
        min_interval_s=send_interval_s,
    )

    async def record(exchange: Exchange) -> None:
        if exchange.route in UNAUDITED:
            return
        failed = await group.submit(entry_of(exchange, random_uuid()))
        if failed is not None:
            raise FundhubError(ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE.default_message)

    return (record,)
