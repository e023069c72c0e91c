"""The consumer loop: a batch per poll, one database transaction per batch, offsets after commit."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.envelope import HEADER_CORRELATION_ID
from fundhub.common.kafka import KafkaPublisher, dead_letter, header, make_consumer
from fundhub.common.logging import correlation
from fundhub.common.topics import Topics
from fundhub.notify_ingest.handler import CONSUMER, apply_transfer_notifications
from fundhub.notify_ingest.messages import PoisonMessage, TransferMessage, decode_transfer_message

log = structlog.get_logger(__name__)

MESSAGES = Counter(
    "fundhub_notify_ingest_messages_total", "Transfer notifications by outcome", ["outcome"]
)
BATCH_SECONDS = Histogram(
    "fundhub_notify_ingest_batch_seconds",
    "Time to apply one batch, database commit included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACCEPT_TO_COMMIT = Histogram(
    "fundhub_notify_ingest_accept_to_commit_seconds",
    "From the gateway's acceptance of a notification to its ledger commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "fundhub_notify_ingest_batch_size",
    "Messages per batch",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
MAX_BATCH = 500
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# Errors that depend on the data, not on the database being reachable.
DETERMINISTIC_DB_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


class TransferNotifyWorker:
    def __init__(
        self, settings: Settings, topics: Topics, pool: asyncpg.Pool, publisher: KafkaPublisher
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._pool = pool
        self._publisher = publisher
        self._consumer: AIOKafkaConsumer | None = None
        # Held across batches: a pool release costs a reset round trip per batch.
        self._conn: asyncpg.Connection | None = None
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        consumer = make_consumer(
            self._settings, self._topics.group(CONSUMER), self._topics.bank_transfer_notify
        )
        self._consumer = consumer
        await consumer.start()
        log.info("consumer_started", topic=self._topics.bank_transfer_notify)
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if consumer.assignment():
                    self.assigned.set()
                if not polled:
                    continue
                await self._process_until_done([r for tp in sorted(polled) for r in polled[tp]])
                await consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in polled.items()}
                )
        finally:
            await self._drop_connection()
            await consumer.stop()

    async def _process_until_done(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Infrastructure failures (Postgres, Kafka) retry the same batch: nothing is skipped."""
        attempt = 0
        while True:
            try:
                await self._process(records)
                return
            except DETERMINISTIC_DB_ERRORS as exc:
                # The same data fails the same way every time: retrying would stop the
                # partition for good. Find the message(s) at fault and park them.
                await self._drop_connection()
                if len(records) == 1:
                    await dead_letter(
                        self._publisher, self._settings, records[0], f"database refused: {exc}"
                    )
                    return
                for record in records:
                    await self._process_until_done([record])
                return
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.error("batch_failed_will_retry", error=str(exc), attempt=attempt, delay=delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        messages: list[tuple[ConsumerRecord[bytes, bytes], TransferMessage]] = []
        poison: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for record in records:
            try:
                messages.append((record, decode_transfer_message(record.value)))
            except PoisonMessage as exc:
                poison.append((record, str(exc)))
        if self._conn is None:
            self._conn = await self._pool.acquire()
        conn = self._conn
        async with conn.transaction():
            result = await apply_transfer_notifications(
                conn, self._topics, [m for _, m in messages]
            )
            by_id = {m.message_id: r for r, m in messages}
            # Parked before the commit: a crash in between re-parks (harmless), never loses.
            for message, reason in result.rejected:
                with correlation(message.correlation_id):
                    await dead_letter(
                        self._publisher, self._settings, by_id[message.message_id], reason
                    )
            for record, reason in poison:
                with correlation(header(record, HEADER_CORRELATION_ID) or "unknown"):
                    await dead_letter(self._publisher, self._settings, record, reason)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(records))
        committed = utcnow()
        for _, message in messages:
            ACCEPT_TO_COMMIT.observe((committed - message.received_at).total_seconds())
        MESSAGES.labels("applied").inc(result.applied)
        MESSAGES.labels("stale").inc(result.stale)
        MESSAGES.labels("duplicate").inc(result.duplicates)
        MESSAGES.labels("dead-lettered").inc(len(result.rejected) + len(poison))
        log.info(
            "batch_applied",
            size=len(records),
            applied=result.applied,
            stale=result.stale,
            duplicates=result.duplicates,
        )

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except Exception:
                conn.terminate()

    async def kafka_ready(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())
