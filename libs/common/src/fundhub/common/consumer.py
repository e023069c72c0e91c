"""The consumer loop every service shares: a batch per poll, one database transaction per batch,
offsets committed only after it (so a crash re-delivers, and the inbox makes the re-delivery
harmless). Poison messages, and messages the database refuses for their data, are parked on the
dead-letter topic; infrastructure failures retry the same batch, so nothing is skipped.

Offsets are committed in the background, never before the batch's database commit: the next
batch does not wait for the broker's answer (about 10 ms here, as long as a small batch's whole
transaction). A commit lost to a crash or a rebalance only means a re-delivery the inbox absorbs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

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
        self._committer: OffsetCommitter | None = None

    async def run(self) -> None:
        consumer = make_consumer(self._settings, self._group, self._topic)
        self._consumer = consumer
        committer = OffsetCommitter(consumer)
        self._committer = committer
        await consumer.start()
        log.info("consumer_started", topic=self._topic)
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if not polled:
                    continue
                records = [r for tp in sorted(polled) for r in polled[tp]]
                actions = await self._process_until_done(records)
                committer.offer({tp: batch[-1].offset + 1 for tp, batch in polled.items()})
                for action in actions:
                    action()
        finally:
            await self._drop_connection()
            await committer.flush()
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


class OffsetCommitter:
    """Commits the newest offsets offered, one request at a time, off the batch loop.

    Offers made while a commit is in flight are merged (per partition the highest wins) and go
    in the next request, so the broker sees at most one commit per batch and usually fewer.
    """

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def offer(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if offset > self._pending.get(tp, -1):
                self._pending[tp] = offset
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_pending(), name="offset-commit")

    async def _commit_pending(self) -> None:
        while self._pending:
            assigned = self._consumer.assignment()
            # A revoked partition's offsets are dropped: its next owner re-reads, the inbox dedupes.
            offsets = {tp: o for tp, o in self._pending.items() if tp in assigned}
            self._pending.clear()
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not fatal: they go again with the next offer; a crash first re-delivers.
                log.warning("offset_commit_failed", error=f"{type(exc).__name__}: {exc}")
                for tp, offset in offsets.items():
                    self._pending[tp] = max(offset, self._pending.get(tp, -1))
                return

    async def flush(self, timeout_s: float = 5.0) -> None:
        """On the way out: wait for the commit in flight, then commit what is left."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._task is not None:
                    await asyncio.gather(self._task, return_exceptions=True)
                await self._commit_pending()
        except Exception as exc:
            log.warning("offset_commit_on_stop_failed", error=f"{type(exc).__name__}: {exc}")
