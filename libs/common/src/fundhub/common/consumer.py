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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from fundhub.common.config import Settings
from fundhub.common.db import Connection, Lent, Pool
from fundhub.common.envelope import HEADER_CORRELATION_ID, Envelope
from fundhub.common.kafka import KafkaPublisher, dead_letter, header, make_consumer
from fundhub.common.logging import correlation
from fundhub.common.retry import DATA_ERRORS, until_it_works

log = structlog.get_logger(__name__)

MAX_BATCH = 500
FRESH_WAIT_MS = 2

Record: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")


class PoisonMessage(Exception):
    """A message that can never be processed: parked on the dead-letter topic with this reason."""


def open_envelope(raw: bytes | None) -> Envelope:
    """The envelope of a record's value; PoisonMessage when there is none to read."""
    if raw is None:
        raise PoisonMessage("empty message")
    try:
        return Envelope.from_bytes(raw)
    except ValidationError as exc:
        raise PoisonMessage(f"not an envelope: {exc.errors()[0]['msg']}") from exc


def decode_all(
    records: list[Record], decode: Callable[[bytes | None], T]
) -> tuple[list[tuple[Record, T]], list[tuple[Record, str]]]:
    """Each record decoded, and those that raised PoisonMessage with the reason."""
    decoded: list[tuple[Record, T]] = []
    poison: list[tuple[Record, str]] = []
    for record in records:
        try:
            decoded.append((record, decode(record.value)))
        except PoisonMessage as exc:
            poison.append((record, str(exc)))
    return decoded, poison


@dataclass
class BatchOutcome:
    """Poison records to park (before the commit) and what to do once the batch committed."""

    poison: list[tuple[Record, str]] = field(default_factory=list)
    after_commit: Callable[[], None] | None = None


Handler = Callable[[Connection, list[Record]], Awaitable[BatchOutcome]]


class BatchConsumer:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        publisher: KafkaPublisher,
        group: str,
        topic: str,
        handle: Handler,
        linger_ms: int = 0,
    ) -> None:
        """``linger_ms``: how long a batch may wait to grow once its first records are in.

        0 takes only what the fetch just started brings (latency first); a consumer whose
        per-batch work dominates can trade a few milliseconds for fewer, larger batches.
        """
        self._settings = settings
        # Gathered here, not by the broker (fetch_max_wait_ms): an idle consumer would then
        # poll it every few ms, which cost a tenth of the box doing nothing.
        self._linger_s = linger_ms / 1000.0
        self._pool = pool
        self._publisher = publisher
        self._group = group
        self._topic = topic
        self._handle = handle
        self._consumer: AIOKafkaConsumer | None = None
        # Held across batches: a pool release costs a reset round trip per batch.
        self._conn: Lent | None = None

    async def run(self) -> None:
        consumer = make_consumer(self._settings, self._group, self._topic)
        self._consumer = consumer
        committer = OffsetCommitter(consumer)
        await consumer.start()
        log.info("consumer_started", topic=self._topic)
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if not polled:
                    continue
                await self._take_fresher(consumer, polled)
                records = [r for tp in sorted(polled) for r in polled[tp]]
                actions = await self._process_until_done(records)
                committer.offer({tp: batch[-1].offset + 1 for tp, batch in polled.items()})
                for action in actions:
                    action()
        finally:
            await self._drop_connection()
            await committer.flush()
            await consumer.stop()

    async def _take_fresher(
        self, consumer: AIOKafkaConsumer, polled: dict[TopicPartition, list[Record]]
    ) -> None:
        """Add what the fetch just started brings, waiting at most ``FRESH_WAIT_MS`` (or, with a
        linger, whatever more arrives until it is over).

        The consumer prefetches: the records ``getmany`` returns were fetched while the previous
        batch ran, and a partition's next fetch starts only once they are taken. Without this,
        whatever arrived during a batch would wait for the whole of the next one too (at 300/s
        that was half of the latency from acceptance to commit)."""
        deadline = time.monotonic() + self._linger_s
        wait_ms = FRESH_WAIT_MS
        while True:
            room = MAX_BATCH - sum(len(batch) for batch in polled.values())
            if room <= 0:
                return
            fresher = await consumer.getmany(timeout_ms=wait_ms, max_records=room)
            for tp, batch in fresher.items():
                polled.setdefault(tp, []).extend(batch)
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                return

    async def _process_until_done(self, records: list[Record]) -> list[Callable[[], None]]:
        """Infrastructure failures retry the same batch: nothing is skipped. A batch the
        database refuses for its data is split, until the one record at fault is parked."""
        async for attempt in until_it_works(f"batch of {self._topic}"):
            with attempt:
                try:
                    return await self._process(records)
                except BaseException:
                    await self._drop_connection()
                    raise
        raise AssertionError("unreachable: until_it_works never gives up")

    async def _process(self, records: list[Record]) -> list[Callable[[], None]]:
        try:
            return await self._process_once(records)
        except DATA_ERRORS as exc:
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

    async def _process_once(self, records: list[Record]) -> list[Callable[[], None]]:
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

    Offers are merged (per partition the highest wins) and committed at most every
    ``interval_s``: an offset commit is a write on the broker, and at a few hundred small
    batches a second they cost it more than the messages. A crash re-delivers at most that
    much more, which the inbox absorbs.
    """

    def __init__(self, consumer: AIOKafkaConsumer, interval_s: float = 0.2) -> None:
        self._consumer = consumer
        self._interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0

    def offer(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if offset > self._pending.get(tp, -1):
                self._pending[tp] = offset
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_pending(), name="offset-commit")

    async def _commit_pending(self, wait: bool = True) -> None:
        while self._pending:
            if wait:
                await asyncio.sleep(max(0.0, self._last + self._interval_s - time.monotonic()))
            self._last = time.monotonic()
            assigned = self._consumer.assignment()
            # A revoked partition's offsets are dropped: its next owner re-reads, the inbox dedupes.
            offsets = {tp: o for tp, o in self._pending.items() if tp in assigned}
            self._pending.clear()
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except asyncio.CancelledError:
                self._restore(offsets)  # flush() commits them again
                raise
            except Exception as exc:
                # Not fatal: they go again with the next offer; a crash first re-delivers.
                log.warning("offset_commit_failed", error=f"{type(exc).__name__}: {exc}")
                self._restore(offsets)
                return

    def _restore(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._pending[tp] = max(offset, self._pending.get(tp, -1))

    async def flush(self, timeout_s: float = 5.0) -> None:
        """On the way out: stop the background commit and commit what is left at once."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._task is not None:
                    self._task.cancel()  # it may be sleeping out the interval
                    await asyncio.gather(self._task, return_exceptions=True)
                await self._commit_pending(wait=False)
        except Exception as exc:
            log.warning("offset_commit_on_stop_failed", error=f"{type(exc).__name__}: {exc}")
