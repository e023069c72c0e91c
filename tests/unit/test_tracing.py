"""Trace context in Kafka record headers (W3C ``traceparent``): written where a message is made,
read back by the consumer, rewritten to the producer span on send; and nothing at all when
tracing is off."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fundhub.common import kafka, tracing
from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def traceparent(headers: list[tuple[str, bytes]]) -> tuple[int, int]:
    values = [v.decode() for k, v in headers if k == "traceparent"]
    assert len(values) == 1, headers
    match = TRACEPARENT.match(values[0])
    assert match, values[0]
    assert int(match[3], 16) & 1, "sampled"
    return int(match[1], 16), int(match[2], 16)


def test_off_by_default_and_without_an_endpoint() -> None:
    threads = threading.active_count()
    tracing.configure(None, "test")
    tracing.configure("", "test")
    assert not tracing.ON
    assert threading.active_count() == threads  # no exporter thread
    assert Settings().otlp_endpoint is None
    envelope = Envelope(type="t", correlation_id="c", data={})
    with tracing.span("not recorded"):
        assert [k for k, _ in envelope.headers()] == ["correlation-id", "message-type"]


def test_inject_then_extract_gives_the_same_span(spans: InMemorySpanExporter) -> None:
    headers: list[tuple[str, bytes]] = [("correlation-id", b"c1")]
    with tracing.span("request") as span:
        tracing.inject(headers)
        tracing.inject(headers)  # again: replaced, not doubled
        made = span.get_span_context()
    assert traceparent(headers) == (made.trace_id, made.span_id)
    assert headers[0] == ("correlation-id", b"c1")
    context = tracing.extract(headers)
    assert context is not None
    read = trace.get_current_span(context).get_span_context()
    assert (read.trace_id, read.span_id, read.is_remote) == (made.trace_id, made.span_id, True)


def test_no_span_no_header_and_broken_headers_read_as_none(
    spans: InMemorySpanExporter,
) -> None:
    headers: list[tuple[str, bytes]] = []
    tracing.inject(headers)
    assert headers == []
    assert tracing.extract(None) is None
    assert tracing.extract([]) is None
    assert tracing.extract([("traceparent", b"00-zz-00-01")]) is None
    assert (
        tracing.extract([("traceparent", b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01")]) is None
    )
    assert tracing.extract([("traceparent", b"\xff\xfe")]) is None


def test_an_envelope_carries_the_context_of_the_work_that_made_it(
    spans: InMemorySpanExporter,
) -> None:
    envelope = Envelope(type="t", correlation_id="c", data={})
    assert [k for k, _ in envelope.headers()] == ["correlation-id", "message-type"]
    with tracing.span("batch") as span:
        headers = envelope.headers()
    assert traceparent(headers) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )


class Capture:
    """A producer that acknowledges at once and keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[tuple[str, bytes]]]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append((topic, kwargs["headers"]))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_send_opens_one_producer_span_per_context_and_rewrites_the_header(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Capture()
    monkeypatch.setattr(kafka, "make_producer", lambda settings, **o: producer)
    publisher = KafkaPublisher(Settings(kafka_publish_timeout_s=1))
    envelope = Envelope(type="t", correlation_id="c", data={})
    with tracing.span("first") as first:
        a1 = OutgoingMessage.of("a", envelope, "k")
        a2 = OutgoingMessage.of("a", envelope, "k")
    with tracing.span("second") as second:
        b = OutgoingMessage.of("a", envelope, "k")
    untraced = OutgoingMessage("a", b"{}", None)
    with tracing.span("sender") as sender:
        await publisher.send_many([a1, a2, b, untraced])
    await publisher.stop()

    produced = {
        s.context.span_id: s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER
    }
    assert len(produced) == 3

    def parent_of(headers: list[tuple[str, bytes]]) -> ReadableSpan:
        trace_id, span_id = traceparent(headers)
        span = produced[span_id]
        assert span.context.trace_id == trace_id and span.parent is not None
        assert span.name == "publish a" and span.attributes is not None
        return span

    sent = [headers for _, headers in producer.sent]
    assert parent_of(sent[0]) is parent_of(sent[1])
    assert parent_of(sent[0]).attributes["messaging.batch.message_count"] == 2  # type: ignore[index]
    for headers, span in zip(sent, (first, first, second, sender), strict=True):
        made = parent_of(headers)
        assert made.parent is not None
        assert made.parent.span_id == span.get_span_context().span_id
    # The messages themselves are left as they were: a retry re-sends them as made.
    assert traceparent(list(a1.headers))[1] == first.get_span_context().span_id


def test_a_log_line_inside_a_span_names_its_trace(spans: InMemorySpanExporter) -> None:
    assert tracing.add_trace_id(None, "info", {"event": "x"}) == {"event": "x"}
    with tracing.span("work") as span:
        line = tracing.add_trace_id(None, "info", {"event": "x"})
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
