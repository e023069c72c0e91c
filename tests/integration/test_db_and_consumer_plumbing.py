"""The shared plumbing against real Postgres and Kafka: fused statements, balance locks, the
background offset commits and the outbox relay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from support.env import ModuleEnv

from fundhub.common import db, inbox
from fundhub.common.consumer import BatchConsumer, BatchOutcome, Record
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher
from fundhub.common.outbox import LEDGER_CHANNEL, OutboxRelay, outbox_writes
from fundhub.common.topics import topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import Balance


async def ensure_and_lock(
    conn: asyncpg.Connection, customers: list[tuple[str, str, str | None]], system_ids: list[str]
) -> dict[str, Balance]:
    *_, locked = await db.run_together(
        conn, ledger_store.ensure_and_lock_steps(customers, system_ids)
    )
    return ledger_store.balances_from(locked)


async def test_run_together_returns_each_steps_rows_in_one_statement(env: ModuleEnv) -> None:
    ids = [f"m-{uuid.uuid4().hex}" for _ in range(3)]
    async with env.pool.acquire() as conn, conn.transaction():
        claimed, silent, counted = await db.run_together(
            conn,
            [
                inbox.claim_step("plumbing", [*ids, ids[0]]),
                db.Step(
                    "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)",
                    ("plumbing-other", ids[0]),
                    returns=False,
                ),
                # Every step sees the statement's starting snapshot, not its siblings' rows.
                db.Step("SELECT count(*) AS n FROM inbox WHERE consumer = $1", ("plumbing",)),
            ],
        )
    assert sorted(r["message_id"] for r in claimed) == sorted(ids)
    assert silent == []
    assert counted == [{"n": 0}]
    others = await env.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'plumbing-other'")
    assert others == 1  # a step that returns nothing still ran
    async with env.pool.acquire() as conn, conn.transaction():
        (again,) = await db.run_together(conn, [inbox.claim_step("plumbing", ids)])
    assert again == []


async def test_ensure_and_lock_creates_then_locks_and_returns_balances(env: ModuleEnv) -> None:
    new, old = f"pl-{uuid.uuid4().hex[:8]}", f"pl-{uuid.uuid4().hex[:8]}"
    await ledger_store.ensure_accounts(env.pool, [(old, "CNY", "old")], [])  # type: ignore[arg-type]
    await env.pool.execute(
        "UPDATE account_balances SET available = 700, frozen = 5 WHERE account_id = $1", old
    )
    async with env.pool.acquire() as conn, conn.transaction():
        balances = await ensure_and_lock(
            conn, [(new, "CNY", "new"), (old, "CNY", "old")], ["sys:plumbing:CNY"]
        )
        assert (balances[new].available, balances[new].frozen) == (0, 0)
        assert (balances[old].available, balances[old].frozen) == (700, 5)
        assert balances[old].currency == "CNY"
        # Both are held until this transaction ends: the existing row is locked, and the new one
        # is this transaction's own insert, which another's must wait for.
        async with env.pool.acquire() as other:
            await other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute(
                    "UPDATE account_balances SET pending = 1 WHERE account_id = $1", old
                )
            with pytest.raises(asyncpg.LockNotAvailableError):
                await ensure_and_lock(other, [(new, "CNY", "new")], [])
    kinds = await env.pool.fetch(
        "SELECT account_id, kind FROM accounts WHERE account_id = ANY($1::text[])",
        [new, "sys:plumbing:CNY"],
    )
    assert {r["account_id"]: r["kind"] for r in kinds} == {
        new: "customer",
        "sys:plumbing:CNY": "system",
    }


async def test_offsets_are_committed_in_the_background_and_flushed_on_stop(
    env: ModuleEnv,
) -> None:
    names = topics(env.settings)
    topic = names.dead_letter  # any topic of this module's namespace will do
    producer = AIOKafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(40):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=str(i % 6).encode())
    finally:
        await producer.stop()
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handle(conn: asyncpg.Connection, records: list[Record]) -> BatchOutcome:
        seen.extend(r.value or b"" for r in records)
        if len(seen) >= 40:
            done.set()
        return BatchOutcome()

    publisher = KafkaPublisher(env.settings)
    group = names.group(f"plumbing-{uuid.uuid4().hex[:6]}")
    consumer = BatchConsumer(env.settings, env.pool, publisher, group, topic, handle)
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        consumer.stop()
        await asyncio.wait({task}, timeout=15)
        if not task.done():
            task.cancel()
        await publisher.stop()
    assert task.done() and task.exception() is None, "the consumer did not stop when asked"
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(40))

    check = AIOKafkaConsumer(
        bootstrap_servers=env.settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await check.start()
    try:
        partitions = [TopicPartition(topic, p) for p in check.partitions_for_topic(topic) or []]
        ends = await check.end_offsets(partitions)
        committed = {tp: await check.committed(tp) for tp in partitions}
    finally:
        await check.stop()
    assert committed == {tp: (end or None) for tp, end in ends.items()}


async def test_a_member_given_no_partition_is_ready_as_a_standby(env: ModuleEnv) -> None:
    """More replicas than partitions: the one without a partition is a member all the same
    (it takes over when the other leaves), so it answers ready."""
    topic = f"{env.settings.topic_namespace}.plumbing-standby-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    async def handle(conn: asyncpg.Connection, records: list[Record]) -> BatchOutcome:
        return BatchOutcome()

    publisher = KafkaPublisher(env.settings)
    group = topics(env.settings).group(f"standby-{uuid.uuid4().hex[:6]}")
    members = [BatchConsumer(env.settings, env.pool, publisher, group, topic, handle) for _ in "ab"]
    tasks = [asyncio.create_task(m.run()) for m in members]
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not all([await m.kafka_ready() for m in members]):
            assert asyncio.get_running_loop().time() < deadline, "a member never became ready"
            await asyncio.sleep(0.2)
        held = sorted(len(m._consumer.assignment()) for m in members if m._consumer)
        assert held == [0, 1]
    finally:
        for member in members:
            member.stop()
        await asyncio.wait(tasks, timeout=15)
        await publisher.stop()
    assert all(t.done() and t.exception() is None for t in tasks)


async def test_the_relay_publishes_in_order_and_marks_rows_published(env: ModuleEnv) -> None:
    names = topics(env.settings)
    events = [Envelope(type="plumbing.test", correlation_id="c", data={"n": i}) for i in range(25)]
    async with env.pool.acquire() as conn, conn.transaction():
        await db.write_together(
            conn,
            outbox_writes([(names.ledger_events, "same-key", e) for e in events]),
            notify=LEDGER_CHANNEL,
        )
    consumer = AIOKafkaConsumer(
        names.ledger_events,
        bootstrap_servers=env.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"plumbing-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    publisher = KafkaPublisher(env.settings)
    relay = OutboxRelay(env.pool, publisher, LEDGER_CHANNEL, batch=10)
    task = asyncio.create_task(relay.run())
    received: list[Envelope] = []

    async def unpublished() -> int:
        count: int = await env.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = $1",
            names.ledger_events,
        )
        return count

    try:
        async with asyncio.timeout(30):
            while len(received) < len(events):
                polled = await consumer.getmany(timeout_ms=500)
                for batch in polled.values():
                    received.extend(Envelope.from_bytes(r.value or b"") for r in batch)
            # The relay marks a batch published after the broker's acknowledgement: the
            # records can be read before that commit (a race the test once lost).
            for _ in range(400):
                if not await unpublished():
                    break
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await publisher.stop()
    ours = [e.data["n"] for e in received if e.type == "plumbing.test"]
    assert ours == list(range(25))  # one key: one partition, in the order written
    assert await unpublished() == 0


async def test_the_relay_listens_again_after_its_connection_is_lost(env: ModuleEnv) -> None:
    """A server restart killed the relay's listening connection and nothing listened again:
    every event then waited out the idle poll. Here the poll is a minute; the event must go
    out in seconds on the notification heard by a new connection."""
    channel = f"plumbing_relisten_{uuid.uuid4().hex[:8]}"
    key = f"relisten-{uuid.uuid4().hex[:8]}"
    names = topics(env.settings)
    pool = await db.connect_pool(env.settings.database_url, min_size=1, max_size=3)
    publisher = KafkaPublisher(env.settings)
    relay = OutboxRelay(pool, publisher, channel, batch=10, idle_s=60)
    task = asyncio.create_task(relay.run())

    async def listeners() -> list[int]:
        rows = await env.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1", f"LISTEN %{channel}%"
        )
        return [r["pid"] for r in rows]

    async def listeners_other_than(known: list[int]) -> bool:
        return any(p not in known for p in await listeners())

    async def published() -> bool:
        left: int = await env.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND key = $1", key
        )
        return left == 0

    async def soon(probe: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if await probe():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not within {timeout_s}s")

    try:
        await soon(lambda: listeners_other_than([]), 20)
        first = await listeners()
        await env.pool.execute("SELECT pg_terminate_backend($1)", first[0])
        await soon(lambda: listeners_other_than(first), 20)
        event = Envelope(type="plumbing.relisten", correlation_id="c", data={})
        async with env.pool.acquire() as conn, conn.transaction():
            await db.write_together(
                conn, outbox_writes([(names.ledger_events, key, event)]), notify=channel
            )
        await soon(published, 10)  # far below the minute's poll
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.stop()
        # Both connections given back, the dead one too: the pool closes without waiting.
        await asyncio.wait_for(pool.close(), 5)


async def test_closing_a_pool_never_waits_for_a_connection_never_given_back(
    env: ModuleEnv,
) -> None:
    """A connection left taken (a relay's listener after the server restarted, or any bug) kept
    Pool.close waiting for ever, and each worker sat out its stop deadline; now it is bounded."""
    pool = await db.connect_pool(env.settings.database_url, min_size=1, max_size=2)
    taken = await pool.acquire()
    assert await taken.fetchval("SELECT 1") == 1
    started = asyncio.get_running_loop().time()
    await db.close_pool(pool, timeout_s=0.5)
    took = asyncio.get_running_loop().time() - started
    assert 0.5 <= took < 3.0, took
    assert pool.is_closing()
    with pytest.raises(asyncpg.InterfaceError):  # terminated, not left open on the server
        await taken.fetchval("SELECT 1")
