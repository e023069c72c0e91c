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
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from fundhub.common import tracing
from fundhub.common.config import Settings
from fundhub.common.db import Connection, Lent, Pool
from fundhub.common.envelope import HEADER_CORRELATION_ID, Envelope
from fundhub.common.kafka import KafkaPublisher, dead_letter, header, make_consumer
from fundhub.common.logging import correlation
from fundhub.common.metrics import CONSUMER_LAG
from fundhub.common.retry import DATA_ERRORS, until_it_works

log = structlog.get_logger(__name__)

MAX_BATCH = 500
FRESH_WAIT_MS = 2
# How often a consumer's lag is worked out (from what the fetches already brought: no request).
LAG_INTERVAL_S = 5.0

# How long leaving the group may take on the way out before the member is abandoned.
STOP_TIMEOUT_S = 10.0

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
        self._stop_requested = False
        self._membership = GroupMembership()

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in hand (at most one poll, 0.5 s, later), its
        offsets flushed. Gentler than cancelling the task: under asyncio a cancellation that
        lands inside ``getmany`` has been seen to go unnoticed for tens of seconds."""
        self._stop_requested = True

    async def run(self) -> None:
        consumer = make_consumer(self._settings, self._group)
        self._consumer = consumer
        committer = OffsetCommitter(consumer)
        lag = LagReport(self._group, self._topic)
        await consumer.start()
        consumer.subscribe([self._topic], listener=self._membership)
        log.info("consumer_started", topic=self._topic)
        try:
            while not self._stop_requested:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if polled:
                    await self._take_fresher(consumer, polled)
                    records = [r for tp in sorted(polled) for r in polled[tp]]
                    actions = await self._process_until_done(records)
                    done = {tp: batch[-1].offset + 1 for tp, batch in polled.items()}
                    committer.offer(done)
                    lag.processed(done)
                    for action in actions:
                        action()
                await lag.refresh(consumer)
        finally:
            lag.clear()
            await self._drop_connection()
            await committer.flush()
            await stop_within(consumer, STOP_TIMEOUT_S)
            # asked: the batch in hand was finished; otherwise cancelled or failed mid-way.
            log.info("consumer_stopped", topic=self._topic, asked=self._stop_requested)

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
        if tracing.ON:
            with self._batch_span(records):
                return await self._transact(records)
        return await self._transact(records)

    async def _transact(self, records: list[Record]) -> list[Callable[[], None]]:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        conn = self._conn
        transaction = conn.transaction()
        await transaction.start()
        try:
            outcome = await self._handle(conn, records)
            for record, reason in outcome.poison:
                with correlation(header(record, HEADER_CORRELATION_ID) or "unknown"):
                    await dead_letter(self._publisher, self._settings, record, reason)
        except BaseException:
            await transaction.rollback()
            raise
        if tracing.ON:
            with tracing.span("COMMIT", attributes={"db.system.name": "postgresql"}):
                await transaction.commit()
        else:
            await transaction.commit()
        return [outcome.after_commit] if outcome.after_commit else []

    def _batch_span(self, records: list[Record]) -> AbstractContextManager[object]:
        """The batch's span: below the first traced record's publish (a batch of one, as at a
        low rate, continues its trace whole), linked to the other records' contexts."""
        contexts = [c for c in (tracing.extract(r.headers) for r in records) if c is not None]
        return tracing.span(
            f"process {self._topic}",
            SpanKind.CONSUMER,
            parent=contexts[0] if contexts else None,
            links=tracing.links_to(contexts[1:]),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._topic,
                "messaging.consumer.group.name": self._group,
                "messaging.batch.message_count": len(records),
            },
        )

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except Exception:
                conn.terminate()

    async def kafka_ready(self) -> bool:
        """Ready once a member of its group: holding partitions, or none when the group has
        more members than the topic has partitions (a standby, which takes over when another
        member leaves). A standby that never answered ready held up rolling updates and
        disruption budgets for nothing."""
        return self._consumer is not None and self._membership.joined


class GroupMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether the consumer has completed a join of its group: aiokafka calls
    ``on_partitions_assigned`` after every join, with an empty set for a member given none."""

    def __init__(self) -> None:
        self.joined = False

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.joined = True


async def stop_within(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    """Stop the consumer, but never wait past ``timeout_s``.

    ``AIOKafkaConsumer.stop`` waits for the group coordination task to finish its pending work,
    and a rebalance stuck on an unavailable coordinator has kept it waiting for ten minutes on a
    loaded CI box. A service on its way out must not hang: the member is abandoned (the broker
    drops it after the session timeout) and the stop goes on in the background.
    """
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
    if not done:
        log.warning("consumer_stop_abandoned", timeout_s=timeout_s)
        stopping.add_done_callback(_retrieve)
        return
    exc = stopping.exception()
    if exc is not None:
        log.warning("consumer_stop_failed", error=f"{type(exc).__name__}: {exc}")


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class LagReport:
    """``fundhub_consumer_lag_messages`` for the partitions this member holds: the high
    watermark the last fetch brought minus the next offset to process (the fetch position
    until a batch of the partition is done). Partitions handed to another member leave the
    gauge, so the group's lag is the sum over its members."""

    def __init__(self, group: str, topic: str, interval_s: float = LAG_INTERVAL_S) -> None:
        self._group = group
        self._topic = topic
        self._interval_s = interval_s
        self._next: dict[int, int] = {}
        self._shown: set[int] = set()
        self._due = 0.0

    def processed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._next[tp.partition] = offset

    async def refresh(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self._interval_s
        held = {tp.partition: tp for tp in consumer.assignment() if tp.topic == self._topic}
        for partition in self._shown - held.keys():
            self._forget(partition)
        for partition, tp in held.items():
            high = consumer.highwater(tp)
            if high is None:
                continue  # no fetch answered for it yet
            following = self._next.get(partition)
            if following is None:
                try:
                    following = await asyncio.wait_for(consumer.position(tp), 1.0)
                except Exception:  # being reassigned or reset: the next refresh sees it
                    continue
            CONSUMER_LAG.labels(self._group, self._topic, str(partition)).set(
                max(0, high - following)
            )
            self._shown.add(partition)

    def _forget(self, partition: int) -> None:
        self._next.pop(partition, None)
        self._shown.discard(partition)
        with contextlib.suppress(KeyError):  # never shown, or removed by another member here
            CONSUMER_LAG.remove(self._group, self._topic, str(partition))

    def clear(self) -> None:
        """On the way out: a stopped member reports nothing rather than a frozen lag."""
        for partition in list(self._shown):
            self._forget(partition)


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
