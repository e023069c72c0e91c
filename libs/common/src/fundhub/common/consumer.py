"""The consumer loop every service shares: a batch per poll, one database transaction per batch,
offsets committed only after it (so a crash re-delivers, and the inbox makes the re-delivery
harmless). Poison messages, and messages the database refuses for their data, are parked on the
dead-letter topic; infrastructure failures retry the same batch, so nothing is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from fundhub.common.config import Settings
from fundhub.common.envelope import HEADER_CORRELATION_ID
from fundhub.common.kafka import (
    KafkaPublisher,
    PublishFailed,
    dead_letter,
    header,
    make_consumer,
)
from fundhub.common.logging import correlation

log = structlog.get_logger(__name__)

MAX_BATCH = 500
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# Errors that depend on the data, not on the database being reachable.
DETERMINISTIC_DB_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass
class BatchOutcome:
    """Poison records to park (before the commit) and what to do once the batch committed."""

    poison: list[tuple[Record, str]] = field(default_factory=list)
    after_commit: Callable[[], None] | None = None


Handler = Callable[[asyncpg.Connection, list[Record]], Awaitable[BatchOutcome]]


class BatchConsumer:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        publisher: KafkaPublisher,
        group: str,
        topic: str,
        handle: Handler,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._publisher = publisher
        self._group = group
        self._topic = topic
        self._handle = handle
        self._consumer: AIOKafkaConsumer | None = None
        # Held across batches: a pool release costs a reset round trip per batch.
        self._conn: asyncpg.Connection | None = None

    async def run(self) -> None:
        consumer = make_consumer(self._settings, self._group, self._topic)
        self._consumer = consumer
        await consumer.start()
        log.info("consumer_started", topic=self._topic)
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if not polled:
                    continue
                records = [r for tp in sorted(polled) for r in polled[tp]]
                actions = await self._process_until_done(records)
                await consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in polled.items()}
                )
                for action in actions:
                    action()
        finally:
            await self._drop_connection()
            await consumer.stop()

    async def _process_until_done(self, records: list[Record]) -> list[Callable[[], None]]:
        """Infrastructure failures retry the same batch: nothing is skipped."""
        attempt = 0
        while True:
            try:
                return await self._process(records)
            except DETERMINISTIC_DB_ERRORS as exc:
                await self._drop_connection()
                if len(records) == 1:
                    await dead_letter(
                        self._publisher, self._settings, records[0], f"database refused: {exc}"
                    )
                    return []
                actions: list[Callable[[], None]] = []
                for record in records:
                    actions.extend(await self._process_until_done([record]))
                return actions
            except (TimeoutError, asyncpg.PostgresError, OSError, PublishFailed) as exc:
                await self._drop_connection()
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.error("batch_failed_will_retry", error=str(exc), attempt=attempt, delay=delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _process(self, records: list[Record]) -> list[Callable[[], None]]:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        conn = self._conn
        async with conn.transaction():
            outcome = await self._handle(conn, records)
            for record, reason in outcome.poison:
                with correlation(header(record, HEADER_CORRELATION_ID) or "unknown"):
                    await dead_letter(self._publisher, self._settings, record, reason)
        return [outcome.after_commit] if outcome.after_commit else []

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except Exception:
                conn.terminate()

    async def kafka_ready(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())
