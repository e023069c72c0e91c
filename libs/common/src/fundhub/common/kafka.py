"""Kafka at the edge: a durable producer, at-least-once consumers, topics and the dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from fundhub.common import tracing
from fundhub.common.config import Settings
from fundhub.common.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTER_SOURCE,
    Envelope,
)
from fundhub.common.metrics import DEAD_LETTERS
from fundhub.common.topics import min_insync_replicas, topics

log = structlog.get_logger(__name__)


class PublishFailed(Exception):
    """Kafka did not confirm the write (acks=all) in time: the caller must not report success."""


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """Idempotent, acks=all: an acknowledged send survives a broker crash (invariant 1)."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": int(settings.kafka_publish_timeout_s * 1000),
        "retry_backoff_ms": 100,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, group: str) -> AIOKafkaConsumer:
    """Offsets are committed by hand, after the database commit (invariant 2). The caller
    subscribes (with its rebalance listener) once it has started the consumer."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        metadata_max_age_ms=30_000,
    )


class KafkaPublisher:
    """A producer that is replaced when a send fails.

    After an outage an idempotent producer can be left with sequence numbers the broker will
    never accept again (OutOfOrderSequence): every later send would fail. So a failed send
    discards the producer, and the next send starts a fresh one (a new producer id). While the
    broker is down that start fails fast, and callers answer "unavailable" instead of hanging.
    """

    def __init__(self, settings: Settings, **overrides: object) -> None:
        self._settings = settings
        self._overrides = overrides
        self._timeout_s = settings.kafka_publish_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._current()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _current(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self._settings, **self._overrides)
                try:
                    await asyncio.wait_for(producer.start(), timeout=self._timeout_s)
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    def _discard(self, producer: AIOKafkaProducer, reason: str) -> None:
        if self._producer is not producer:
            return
        self._producer = None
        log.warning("kafka_producer_replaced", reason=reason)

        async def close(doomed: AIOKafkaProducer = producer) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(doomed.stop(), timeout=self._timeout_s)

        task = asyncio.create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send and wait for every acknowledgement (acks=all), or raise PublishFailed."""
        if tracing.ON:
            with tracing.publishing(messages) as headers:
                await self._send_many(messages, headers)
        else:
            await self._send_many(messages, None)

    async def _send_many(
        self,
        messages: Sequence[OutgoingMessage],
        headers: Sequence[Sequence[tuple[str, bytes]]] | None,
    ) -> None:
        """``headers``: each message's, when tracing rewrote them."""
        producer: AIOKafkaProducer | None = None
        try:
            # One deadline for the whole send, a fresh producer's start included: a caller
            # (a request whose answer waits on it) waits at most the publish timeout, not twice
            # it. asyncio.timeout, not wait_for: no task per call.
            async with asyncio.timeout(self._timeout_s):
                producer = await self._current()
                futures = [
                    await producer.send(
                        m.topic,
                        value=m.value,
                        key=m.key,
                        headers=list(m.headers if headers is None else headers[i]),
                    )
                    for i, m in enumerate(messages)
                ]
                if len(futures) == 1:
                    await futures[0]
                else:
                    await asyncio.gather(*futures)
        except Exception as exc:
            if producer is not None:
                self._discard(producer, f"{type(exc).__name__}: {exc}")
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    async def ready(self) -> bool:
        try:
            producer = await self._current()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes
    key: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()

    @classmethod
    def of(cls, topic: str, envelope: Envelope, key: str | None) -> OutgoingMessage:
        return cls(
            topic,
            envelope.to_bytes(),
            key.encode() if key is not None else None,
            envelope.headers(),
        )


async def ensure_topics(settings: Settings) -> None:
    """Create the namespace's topics when missing; safe to call from every replica at start.

    Each with ``min.insync.replicas`` for its replication factor (2 of 3), whatever the
    brokers' default: the producers' acks=all then means "on two brokers"."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        wanted = topics(settings).all()
        existing = set(await admin.list_topics())
        replicas = settings.topic_replication_factor
        configs = {"min.insync.replicas": str(min_insync_replicas(replicas))}
        missing = [
            NewTopic(name, settings.topic_partitions, replicas, topic_configs=configs)
            for name in wanted
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            await _wait_for_leaders(admin, [t.name for t in missing])
            log.info("topics_created", topics=[t.name for t in missing])
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0
) -> None:
    """Return once every partition of ``names`` has a leader the broker will tell clients of.

    A topic is created before its partitions have leaders. A consumer that joins its group in
    between is assigned nothing ("no partition metadata") and reads nothing until its next
    metadata refresh, 30 s later: a service started with its topics would sit idle that long."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        led = {
            d["topic"]
            for d in described
            if d.get("error_code", 0) == 0
            and d["partitions"]
            and all(p.get("leader", -1) >= 0 for p in d["partitions"])
        }
        if led >= set(names):
            return
        if time.monotonic() > deadline:
            log.warning("topics_without_leaders", topics=sorted(set(names) - led))
            return
        await asyncio.sleep(0.1)


async def dead_letter(
    publisher: KafkaPublisher,
    settings: Settings,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
) -> None:
    """Park a message that can never be processed, with why and where it came from."""
    headers: Sequence[tuple[str, bytes]] = [
        *(record.headers or ()),
        (HEADER_DEAD_LETTER_REASON, reason.encode()),
        (HEADER_DEAD_LETTER_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    await publisher.send_many(
        [OutgoingMessage(topics(settings).dead_letter, record.value, record.key, headers)]
    )
    DEAD_LETTERS.labels(record.topic).inc()
    log.warning("dead_lettered", reason=reason, topic=record.topic, offset=record.offset)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return str(value.decode(errors="replace"))
    return None
