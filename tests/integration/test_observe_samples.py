"""The gauges workers sample on a timer, against real Postgres and Kafka: what each probe
reads, and a consumer's lag from the high watermarks its fetches bring."""

from __future__ import annotations

import uuid
from datetime import date

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY
from support.env import ModuleEnv

from fundhub.common.consumer import LagReport
from fundhub.common.sampling import Probe, Sampler, messaging_probes
from fundhub.common.topics import topics
from fundhub.orders.store import sample_refunds_past_deadline
from fundhub.payouts.store import sample_past_deadline
from fundhub.reconciliation.open_discrepancies import open_discrepancies_probe
from fundhub.webhooks.store import pending_probe


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_outbox_backlog_and_its_oldest_row_leave_published_rows_out(
    env: ModuleEnv,
) -> None:
    async with env.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO outbox (topic, payload, created_at, published_at) SELECT 't', '\\x00',"
            " now() - interval '1 hour', now() FROM generate_series(1, 5)"
        )
        await conn.execute(
            "INSERT INTO outbox (topic, payload, created_at) SELECT 't', '\\x00',"
            " now() - make_interval(secs => 93 - g) FROM generate_series(1, 3) g"
        )
        await conn.execute(
            "INSERT INTO inbox (consumer, message_id) SELECT 'observe', g::text"
            " FROM generate_series(1, 1234) g"
        )
        await conn.execute("ANALYZE inbox")
        inbox_rows = await conn.fetchval("SELECT count(*) FROM inbox")
    await Sampler(env.pool, messaging_probes(), 60).sample_once()
    assert value("fundhub_outbox_backlog") == 3
    age = value("fundhub_outbox_oldest_age_seconds")
    assert age is not None and 89 <= age < 120
    assert value("fundhub_inbox_rows_estimate") == inbox_rows

    async with env.pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    await Sampler(env.pool, messaging_probes(), 60).sample_once()
    assert value("fundhub_outbox_backlog") == 0
    assert value("fundhub_outbox_oldest_age_seconds") == 0


async def test_late_payouts_and_refunds_and_pending_callbacks_are_counted(
    env: ModuleEnv,
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with env.pool.acquire() as conn:
        # Two late, one not yet due, one late but finished: only the first two count.
        for i, (state, deadline) in enumerate(
            [
                ("PROCESSING", "-1 hour"),
                ("PROCESSING", "-1 minute"),
                ("PROCESSING", "1 hour"),
                ("SUCCESS", "-1 hour"),
            ]
        ):
            await conn.execute(
                "INSERT INTO payouts (pay_id, key_id, request_id, supplier_id, payer_account_id,"
                " amount, currency, payee, state, deadline_at, next_poll_at) VALUES"
                " ($1, 'k', $1, 's', 'a', 100, 'CNY', '{}', $2, now() + $3::text::interval, now())",
                f"P{tag}{i}",
                state,
                deadline,
            )
        await conn.execute(
            "INSERT INTO orders (order_id, key_id, order_no, fingerprint, amount, currency,"
            " channel, app_id, description, platform_fee, state) VALUES ($1, 'k', $1, 'f',"
            " 300, 'CNY', 'WECHATPAY', 'wx-app', 'goods', 0, 'PAID')",
            f"O{tag}",
        )
        # Held and late, held and on time, late but not yet held (no deadline counts before
        # the money is held), late but closed: only the first counts.
        for i, (state, held, deadline) in enumerate(
            [
                ("PROCESSING", True, "-5 minutes"),
                ("PROCESSING", True, "1 hour"),
                ("PROCESSING", False, "-5 minutes"),
                ("CLOSED", True, "-5 minutes"),
            ]
        ):
            await conn.execute(
                "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount,"
                " allocation, state, held, deadline_at, next_poll_at) VALUES ($1, $2, $1, 'f',"
                " 1, '{1}', $3, $4, now() + $5::text::interval, now())",
                f"R{tag}{i}",
                f"O{tag}",
                state,
                held,
                deadline,
            )
        await conn.execute(
            "INSERT INTO callback_deliveries (pay_id, state, url, key_id, body, status,"
            " created_at) SELECT $1 || g, 'SUCCESS', 'https://c.example/cb', 'k', '\\x00',"
            " CASE WHEN g <= 2 THEN 'PENDING' ELSE 'DELIVERED' END,"
            " now() - make_interval(mins => g * 10) FROM generate_series(1, 4) g",
            f"P{tag}",
        )
    probes = [
        Probe("payouts", sample_past_deadline),
        Probe("refunds", sample_refunds_past_deadline),
        pending_probe(),
    ]
    await Sampler(env.pool, probes, 60).sample_once()
    assert value("fundhub_processing_past_deadline", kind="payout") == 2
    assert value("fundhub_processing_past_deadline", kind="refund") == 1
    assert value("fundhub_callbacks_pending") == 2
    oldest = value("fundhub_callbacks_oldest_pending_age_seconds")
    assert oldest is not None and 20 * 60 <= oldest < 25 * 60


async def test_a_failing_probe_is_counted_and_the_others_still_run(env: ModuleEnv) -> None:
    async def broken(conn: object) -> None:
        raise RuntimeError("no such table")

    before = value("fundhub_sample_failures_total", probe="broken") or 0
    probes = [Probe("broken", broken), *messaging_probes()]
    async with env.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO outbox (topic, payload) SELECT 't', '\\x00' FROM generate_series(1, 4)"
        )
    await Sampler(env.pool, probes, 60).sample_once()
    assert value("fundhub_sample_failures_total", probe="broken") == before + 1
    assert value("fundhub_outbox_backlog") == 4


async def test_lag_is_the_high_watermark_minus_the_next_offset_per_partition(
    env: ModuleEnv,
) -> None:
    topic = topics(env.settings).dead_letter  # a topic of this module's namespace
    group = f"observe-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
        await producer.send_and_wait(topic, b"x", partition=1)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=env.settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer.assign([p0, p1])
    lag = LagReport(group, topic, interval_s=0)
    try:
        polled = {}
        while p0 not in polled:
            polled = await consumer.getmany(p0, timeout_ms=2000, max_records=3)
        first = polled[p0]
        assert [r.offset for r in first] == [0, 1, 2]
        lag.processed({p0: first[-1].offset + 1})
        await lag.refresh(consumer)
        assert value("fundhub_consumer_lag_messages", group=group, topic=topic, partition="0") == 7
        # Partition 1 was fetched from but nothing processed: its fetch position counts.
        assert value("fundhub_consumer_lag_messages", group=group, topic=topic, partition="1") in (
            0,
            1,
        )
        consumer.assign([p1])  # partition 0 went to another member: it leaves the gauge
        await lag.refresh(consumer)
        assert (
            value("fundhub_consumer_lag_messages", group=group, topic=topic, partition="0") is None
        )
        lag.clear()
        assert (
            value("fundhub_consumer_lag_messages", group=group, topic=topic, partition="1") is None
        )
    finally:
        await consumer.stop()


async def test_open_discrepancies_of_current_runs_per_source_and_class(env: ModuleEnv) -> None:
    tag = uuid.uuid4().hex[:8]
    async with env.pool.acquire() as conn:
        for run, state, day in (
            (f"RUN{tag}a", "CURRENT", date(2026, 11, 29)),
            (f"RUN{tag}b", "SUPERSEDED", date(2026, 11, 28)),
        ):
            file_id = await conn.fetchval(
                "INSERT INTO recon_files (source, day, sha256, name, line_count, amount_fen,"
                " refund_fen, fee_fen, lines_fen, imported_by) VALUES ('bank', $2,"
                " $1, 'f', 0, 0, 0, 0, 0, 'test') RETURNING file_id",
                run,
                day,
            )
            await conn.execute(
                "INSERT INTO recon_runs (run_id, source, day, file_id, file_ids, state, counts,"
                " sums, line_count, record_count, carried_in, carried_out, started_at, run_by)"
                " VALUES ($1, 'bank', $4, $2, ARRAY[$2::bigint], $3, '{}', '{}', 0, 0, 0, 0,"
                " now(), 't')",
                run,
                file_id,
                state,
                day,
            )
        rows = [
            (f"RUN{tag}a", "amount_mismatch", "OPEN"),
            (f"RUN{tag}a", "amount_mismatch", "ADJUSTMENT_PROPOSED"),
            (f"RUN{tag}a", "amount_mismatch", "RESOLVED"),
            (f"RUN{tag}a", "duplicate", "WRITTEN_OFF"),
            (f"RUN{tag}b", "missing_on_platform", "OPEN"),  # its run was superseded
        ]
        for i, (run, kind, state) in enumerate(rows):
            await conn.execute(
                "INSERT INTO recon_discrepancies (discrepancy_id, run_id, class, state, kind,"
                " reference) VALUES ($1, $2, $3, $4, 'credit', $1)",
                f"D{tag}{i}",
                run,
                kind,
                state,
            )
    probe = open_discrepancies_probe()
    await Sampler(env.pool, [probe], 60).sample_once()
    gauge = "fundhub_reconciliation_discrepancies_open"
    assert value(gauge, source="bank", **{"class": "amount_mismatch"}) == 2
    assert value(gauge, source="bank", **{"class": "duplicate"}) == 0
    assert value(gauge, source="bank", **{"class": "missing_on_platform"}) == 0
    assert value(gauge, source="alipay", **{"class": "fee_difference"}) == 0
    assert value("fundhub_sample_failures_total", probe=probe.name) is None
