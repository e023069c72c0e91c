"""Reading topics in tests: how much was published, and what."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.topics import topics


async def message_count(settings: Settings, topic: str) -> int:
    """Messages ever written to the topic: the sum of its partitions' end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for d in described for p in d["partitions"]]
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def read_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 10
) -> list[Envelope]:
    """Read the topic from the start until ``expected`` messages arrived or the time is up."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Envelope] = []
    try:
        import time

        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            for records in polled.values():
                out.extend(Envelope.from_bytes(r.value) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


async def delete_topics(settings: Settings) -> None:
    """A test namespace's topics go with it, so runs do not pile partitions onto the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics(settings).all())
    except Exception:  # best effort: a test run must not fail on cleanup
        pass
    finally:
        await admin.close()


async def read_keyed(
    settings: Settings, topic: str, expected: int, timeout_s: float = 10
) -> list[tuple[str | None, Envelope]]:
    """Like ``read_all``, with each message's key."""
    import time

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[str | None, Envelope]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            for records in polled.values():
                out.extend(
                    (r.key.decode() if r.key else None, Envelope.from_bytes(r.value))
                    for r in records
                    if r.value is not None
                )
        return out
    finally:
        await consumer.stop()
