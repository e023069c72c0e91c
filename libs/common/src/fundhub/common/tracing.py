"""OpenTelemetry traces: one trace from the gateway's request through Kafka to a consumer's
database commit, exported over OTLP/HTTP. Off unless ``FUNDHUB_OTLP_ENDPOINT`` is set.

Why the official ``opentelemetry-api``/``-sdk``/``-exporter-otlp-proto-http`` packages: OTLP and
W3C Trace Context are specifications whose reference implementation they are; any collector
(the OpenTelemetry Collector, Jaeger, Tempo) is tested against them, and a home-made protobuf
encoder would be a second implementation of a wire format to keep right. The HTTP exporter, not
the gRPC one: no grpcio to build, and every collector takes OTLP/HTTP (port 4318).

Off, the cost is nil: no provider, exporter or thread is made (the SDK is not even imported),
and every hook below is a test of ``ON`` before anything else (bench/tracing_overhead.py).

How the context travels: ``Envelope.headers()`` adds the current span's ``traceparent`` to every
message, so a direct publish and an outbox row (its ``headers`` column) carry the context of the
request or batch that made them; ``KafkaPublisher.send_many`` opens a producer span under each
distinct context and rewrites the header to it, so the consumer's span hangs below the publish
(the outbox relay's too, however much later it runs); ``BatchConsumer`` processes a batch under
its first traced record's context, linking the others', with the database commit as a child.

The gateway starts a new trace per request and never adopts a caller's ``traceparent``: an
outsider must not choose our trace ids or sampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
# The path OTLP/HTTP receivers take spans on, below the collector's base address.
TRACES_PATH = "/v1/traces"
# A batch of 500 records links at most this many of the other contexts (the SDK's own limit
# is 128): enough to find the others, bounded whatever the batch.
MAX_LINKS = 32

Headers = Sequence[tuple[str, bytes]]

# Whether tracing was configured in this process; every hook tests it first.
ON = False
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()
_propagator = TraceContextTextMapPropagator()


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        found = [v.decode("ascii", "replace") for k, v in carrier if k == key]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[MutableSequence[tuple[str, bytes]]]):
    def set(self, carrier: MutableSequence[tuple[str, bytes]], key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("ascii")))


_GETTER = _HeaderGetter()
_SETTER = _HeaderSetter()


def configure(endpoint: str | None, service: str) -> None:
    """Export this process's spans to the OTLP/HTTP receiver at ``endpoint`` (its base
    address, e.g. ``http://collector:4318``); nothing at all when it is empty."""
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH, timeout=5)
    # Spans are queued and sent by the processor's thread: a slow or absent collector costs
    # the request path nothing (a full queue drops spans, never blocks).
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    install(provider)


def install(provider: TracerProvider) -> None:
    """Trace into ``provider``: ``configure``'s, or one that keeps spans in memory (the tests
    and the benchmark read what the hooks made)."""
    global ON, _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("fundhub")
    ON = True


def shutdown() -> None:
    """Send what is queued (bounded by the exporter's timeout) and stop; on the way out."""
    global ON, _provider, _tracer
    provider, _provider = _provider, None
    ON = False
    _tracer = trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


def inject(headers: MutableSequence[tuple[str, bytes]], context: Context | None = None) -> None:
    """Add the W3C ``traceparent`` (and ``tracestate``) of ``context`` (default: the current
    span's) to Kafka record headers, replacing any; nothing when there is no sampled span."""
    _propagator.inject(headers, context, _SETTER)


def extract(headers: Headers | None) -> Context | None:
    """The context a record's headers carry, or None when they carry none (or a broken one)."""
    if not headers:
        return None
    context = _propagator.extract(headers, getter=_GETTER)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    links: Sequence[Link] = (),
    attributes: dict[str, str | int] | None = None,
) -> Iterator[Span]:
    """A span, current inside the block; an exception leaves it marked as an error."""
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, links=links, attributes=attributes
    ) as current:
        yield current


def add_trace_id(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: a line logged inside a span names its trace, to go from a log
    line to its trace (the server span carries the correlation id the other way)."""
    if ON:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
    return event


def links_to(contexts: Iterable[Context]) -> list[Link]:
    """Links to the spans ``contexts`` hold (at most ``MAX_LINKS``)."""
    links: list[Link] = []
    for context in contexts:
        if len(links) >= MAX_LINKS:
            break
        links.append(Link(trace.get_current_span(context).get_span_context()))
    return links


def name_route(method: str, route: str, correlation_id: str) -> None:
    """Name the current (server) span by its route's template (one name per route, whatever
    ids the path holds), with the correlation id the logs carry, to go from one to the other."""
    current = trace.get_current_span()
    current.update_name(f"{method} {route}")
    current.set_attribute("http.route", route)
    current.set_attribute("fundhub.correlation_id", correlation_id)


def note_status(status: int) -> None:
    """The HTTP status on the current (server) span; a 5xx marks it as an error."""
    current = trace.get_current_span()
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(StatusCode.ERROR)


class Outgoing(Protocol):
    """What ``publishing`` needs of a message (``kafka.OutgoingMessage``)."""

    @property
    def topic(self) -> str: ...

    @property
    def headers(self) -> Headers: ...


@contextmanager
def publishing(messages: Sequence[Outgoing]) -> Iterator[list[list[tuple[str, bytes]]]]:
    """Producer spans for a send, open inside the block: one per distinct context the messages
    carry (a message with none is sent under the current span). Yields each message's headers
    with its ``traceparent`` rewritten to its span's, so the consumer hangs below the publish."""
    headers = [list(message.headers) for message in messages]
    groups: dict[tuple[bytes | None, str], list[int]] = {}
    for i, carried in enumerate(headers):
        groups.setdefault((_traceparent(carried), messages[i].topic), []).append(i)
    spans: list[Span] = []
    try:
        for (traceparent, topic), members in groups.items():
            parent = extract([(HEADER_TRACEPARENT, traceparent)]) if traceparent else None
            started = _tracer.start_span(
                f"publish {topic}",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                    "messaging.batch.message_count": len(members),
                },
            )
            spans.append(started)
            context = trace.set_span_in_context(started)
            for i in members:
                inject(headers[i], context)
        yield headers
    except BaseException as exc:
        for started in spans:
            started.record_exception(exc)
            started.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        for started in spans:
            started.end()


def _traceparent(headers: Headers) -> bytes | None:
    for key, value in headers:
        if key == HEADER_TRACEPARENT:
            return value
    return None
