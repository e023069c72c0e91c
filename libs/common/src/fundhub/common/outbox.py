"""The transactional outbox: events are stored with their state and relayed to Kafka afterwards.

An event is written in the same transaction as the state it announces (invariant 3); the relay
publishes it with acks=all and only then marks it published, so a crash re-sends (consumers dedupe
by envelope id) but never loses or invents an event.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from fundhub.common.db import BatchInsert, Write
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "fundhub_outbox"
_INSERT_OUTBOX = BatchInsert(
    "outbox", (("topic", "text"), ("key", "text"), ("payload", "bytea"), ("headers", "jsonb"))
)


def outbox_writes(events: list[tuple[str, str | None, Envelope]]) -> list[Write]:
    """Rows for ``db.write_together``; pass ``notify=NOTIFY_CHANNEL`` to wake the relay."""
    return [
        (
            _INSERT_OUTBOX,
            [
                (topic, key, env.to_bytes(), {k: v.decode() for k, v in env.headers()})
                for topic, key, env in events
            ],
        )
    ]


class OutboxRelay:
    """Publishes committed outbox rows in id order; several replicas share work via SKIP LOCKED."""

    def __init__(
        self, pool: asyncpg.Pool, publisher: KafkaPublisher, batch: int = 500, idle_s: float = 0.5
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._batch = batch
        self._idle_s = idle_s
        self._wake = asyncio.Event()
        self.published = 0

    async def relay_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, payload, headers FROM outbox "
                "WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            await self._publisher.send_many(
                [
                    OutgoingMessage(
                        r["topic"],
                        bytes(r["payload"]),
                        r["key"].encode() if r["key"] is not None else None,
                        [(k, str(v).encode()) for k, v in (r["headers"] or {}).items()],
                    )
                    for r in rows
                ]
            )
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        self.published += len(rows)
        return len(rows)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while True:
                try:
                    sent = await self.relay_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("outbox_relay_failed", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                if sent == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._idle_s)
        finally:
            await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(listener)
