"""Reading topics in tests: how much was published, and what."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.topics import topics


async def end_offsets(settings: Settings, *names: str) -> dict[TopicPartition, int]:
    """Each partition of the topics and its end offset (none of a topic that does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def message_count(settings: Settings, topic: str) -> int:
    """Messages ever written to the topic: the sum of its partitions' end offsets."""
    return sum((await end_offsets(settings, topic)).values())


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


async def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Messages of the topic the consumer group has not committed yet (a partition it never
    committed counts from 0)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    # The ends read after the commits: a commit is never past the end it is compared with.
    ends = await end_offsets(settings, topic)
    done = {tp: meta.offset for tp, meta in committed.items() if meta is not None}
    return sum(end - max(done.get(tp, 0), 0) for tp, end in ends.items())


async def group_assignments(settings: Settings, group: str) -> list[set[tuple[str, int]]]:
    """The partitions each live member of a consumer group holds (one set per member)."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    held: list[set[tuple[str, int]]] = []
    for described in response.groups:
        for member in described[5]:
            raw = member[-1]
            if not raw:
                held.append(set())
                continue
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            held.append({(t, p) for t, partitions in assignment.assignment for p in partitions})
    return held


async def partition_leaders(settings: Settings) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """Each partition of the namespace's topics: its leader and its in-sync replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics(settings).all())
    finally:
        await admin.close()
    return {
        (d["topic"], p["partition"]): (p["leader"], sorted(p["isr"]))
        for d in described
        for p in d["partitions"]
    }
