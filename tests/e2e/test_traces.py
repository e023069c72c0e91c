"""Traces on the running processes: a bank notification is one trace from the gateway's request
through Kafka to notify-ingest's database commit and the outbox relay's publish, received by a
real OTLP/HTTP receiver; with ``FUNDHUB_OTLP_ENDPOINT`` unset nothing is exported (even with the
SDK's own ``OTEL_*`` variables set) and no message carries a trace header."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from support.env import ModuleEnv
from support.otlp import OtlpReceiver, Received, otlp_receiver
from support.processes import Service, gateway, notify_ingest

from e2e.conftest import wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.common.topics import topics

PRODUCER, CONSUMER, SERVER = 4, 5, 2  # opentelemetry.proto Span.SpanKind values


@dataclass
class Pair:
    """A gateway and notify-ingest on their own environment, and the receiver they are (or
    are not) exporting to."""

    env: ModuleEnv
    gateway: Service
    ingest: Service
    receiver: OtlpReceiver

    def stop(self) -> None:
        self.ingest.terminate()  # both at once, then wait for each
        self.gateway.terminate()
        self.ingest.stop()
        self.gateway.stop()


@pytest.fixture(scope="module")
async def pairs(env: ModuleEnv, other_env: ModuleEnv) -> AsyncIterator[tuple[Pair, Pair]]:
    """Two pairs started at once, each on its own database and topics (so neither consumes the
    other's messages nor relays the other's outbox): one exporting to a receiver, one with the
    setting unset but the SDK's own ``OTEL_*`` variables pointing at another (only
    ``FUNDHUB_OTLP_ENDPOINT`` may turn tracing on)."""
    with otlp_receiver() as on_receiver, otlp_receiver() as off_receiver:
        on = {"FUNDHUB_OTLP_ENDPOINT": on_receiver.url}
        off = {"OTEL_EXPORTER_OTLP_ENDPOINT": off_receiver.url, "OTEL_TRACES_EXPORTER": "otlp"}
        made = (
            Pair(env, gateway(env, **on), notify_ingest(env, **on), on_receiver),
            Pair(
                other_env, gateway(other_env, **off), notify_ingest(other_env, **off), off_receiver
            ),
        )
        try:
            for pair in made:
                pair.gateway.start()
                pair.ingest.start()
            for pair in made:  # while they start (the gateway reads bank apps on first use)
                pair.env.register_bank_app()
            await asyncio.gather(
                *(s.wait_ready() for pair in made for s in (pair.gateway, pair.ingest))
            )
            yield made
        finally:
            for pair in made:
                pair.gateway.terminate()
                pair.ingest.terminate()
            for pair in made:
                pair.stop()


async def notify_and_wait_for_commit(env: ModuleEnv, gw: Service) -> tuple[str, str]:
    """One signed transfer notification, answered ``success`` and committed; its record id and
    the correlation id of the answer."""
    record_id = uuid.uuid4().hex[:20]
    spec = TransferSpec(record_id=record_id, in_acct_no="6222000011112222", trans_amount=1234)
    params = build_notification(spec, env.app_id, env.bank.private_pem)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        answer = await http.post("/callbacks/bank", json=params)
    assert answer.status_code == 200 and answer.text == "success", answer.text

    async def committed() -> bool:
        state = await env.pool.fetchval(
            "SELECT state FROM bank_transfer_records WHERE record_id = $1", record_id
        )
        return state is not None

    await wait_until(committed, timeout_s=20)
    return record_id, answer.headers["x-correlation-id"]


def one_of(spans: list[Received], name: str) -> Received:
    found = [s for s in spans if s.span.name == name]
    assert len(found) == 1, (name, [(s.service, s.span.name) for s in spans])
    return found[0]


async def test_a_notification_is_one_trace_from_request_to_commit(
    pairs: tuple[Pair, Pair],
) -> None:
    names = topics(pairs[0].env.settings)
    receiver = pairs[0].receiver
    _, correlation_id = await notify_and_wait_for_commit(pairs[0].env, pairs[0].gateway)

    def request_trace() -> list[Received] | None:
        spans = receiver.snapshot()
        roots = [
            s for s in spans if s.span.name == "POST /callbacks/bank" and s.service == "gateway"
        ]
        if len(roots) != 1:
            return None
        traced = [s for s in spans if s.trace_id == roots[0].trace_id]
        relayed = [
            s
            for s in traced
            if s.span.name == f"publish {names.ledger_events}" and s.service == "notify-ingest"
        ]
        return traced if relayed else None

    async def whole() -> bool:
        return request_trace() is not None

    try:
        await wait_until(whole, timeout_s=15)
    except AssertionError:
        got = [(s.service, s.span.name, s.trace_id[:8], s.parent_id) for s in receiver.snapshot()]
        raise AssertionError(f"no whole trace among {got}") from None
    traced = request_trace()
    assert traced is not None
    request = one_of(traced, "POST /callbacks/bank")
    assert (request.service, request.span.kind, request.parent_id) == ("gateway", SERVER, "")
    assert request.attribute("http.response.status_code") == 200
    assert request.attribute("http.route") == "/callbacks/bank"
    assert request.attribute("fundhub.correlation_id") == correlation_id

    published = one_of(traced, f"publish {names.bank_transfer_notify}")
    assert (published.service, published.span.kind) == ("gateway", PRODUCER)
    assert published.parent_id == request.span_id

    processed = one_of(traced, f"process {names.bank_transfer_notify}")
    assert (processed.service, processed.span.kind) == ("notify-ingest", CONSUMER)
    assert processed.parent_id == published.span_id
    assert processed.attribute("messaging.batch.message_count") == 1

    commit = one_of(traced, "COMMIT")
    assert (commit.service, commit.parent_id) == ("notify-ingest", processed.span_id)
    assert commit.span.start_time_unix_nano >= processed.span.start_time_unix_nano
    assert commit.span.end_time_unix_nano <= processed.span.end_time_unix_nano

    # The ledger event went through the outbox: its row kept the batch's context, and the
    # relay's publish (another task, later) continues the same trace below the batch.
    relayed = one_of(traced, f"publish {names.ledger_events}")
    assert (relayed.span.kind, relayed.parent_id) == (PRODUCER, processed.span_id)
    assert relayed.span.start_time_unix_nano >= commit.span.end_time_unix_nano


async def test_unset_nothing_is_exported_and_no_header_is_sent(pairs: tuple[Pair, Pair]) -> None:
    off = pairs[1]
    record_id, _ = await notify_and_wait_for_commit(off.env, off.gateway)
    off.stop()  # a configured exporter would flush what it holds on the way out
    assert (off.receiver.requests, off.receiver.snapshot()) == (0, [])
    topic = topics(off.env.settings).bank_transfer_notify
    assert await trace_headers_on(off.env, topic, record_id) == []


async def trace_headers_on(env: ModuleEnv, topic: str, record_id: str) -> list[str]:
    """The trace headers of the message about ``record_id`` on ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=env.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        for _ in range(50):
            polled = await consumer.getmany(timeout_ms=200)
            for record in (r for batch in polled.values() for r in batch):
                if record.value is not None and record_id.encode() in record.value:
                    return [k for k, _ in record.headers if k in ("traceparent", "tracestate")]
        raise AssertionError(f"no message about {record_id} on {topic}")
    finally:
        await consumer.stop()
