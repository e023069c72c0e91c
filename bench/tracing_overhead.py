"""What tracing costs the hot paths: on (exporting over OTLP), off (the default), and none (the
same code before tracing existed).

Two paths, in process, with Kafka and Postgres replaced by instant stand-ins so that only the
CPU of fundhub's own code is timed (a broker or database round trip would drown it, and this box
is shared):

  request   one ``POST`` through the gateway's pipeline (``Edge``) to a hot route that makes an
            envelope and publishes it with ``KafkaPublisher.send_many`` (the bank callback's
            shape, without its signature check): the server span, ``Envelope.headers``, the
            producer span and header rewrite.
  batch     ``BatchConsumer._process_once`` on a batch of B records carrying what ``request``
            published, whose handler writes one outbox row per record (``outbox_writes``): the
            context extracted, the consumer span with its links, the outbox headers, the
            commit span.

Modes:

  on    ``tracing.configure`` with a real OTLP/HTTP exporter to a receiver in another process
        that answers 200 to everything (the batch processor's thread encodes and posts in
        this process, as in a service; it is part of the cost).
  off   the code of this branch, ``FUNDHUB_OTLP_ENDPOINT`` unset.
  none  run with the interpreter of a checkout without tracing (``--mode none`` never imports
        ``fundhub.common.tracing``), e.g. ``../main/.venv/bin/python bench/tracing_overhead.py
        --mode none``: the code that existed before.

Each mode runs ``--rounds`` rounds of N requests and N/B batches; the figure is the median per
round of the process's CPU time (µs per request, per record; the exporter's thread included),
one process per mode:

    .venv/bin/python bench/tracing_overhead.py --mode on
    .venv/bin/python bench/tracing_overhead.py --mode off
    <checkout without tracing>/.venv/bin/python bench/tracing_overhead.py --mode none
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from fundhub.common import kafka
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer, BatchOutcome
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage
from fundhub.common.outbox import outbox_writes
from fundhub.gateway.edge import Edge, edge_route

SINK = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class InstantProducer:
    """Kafka's stand-in: every send acknowledged at once; keeps the last records' headers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[None]:
        if len(self.sent) < 10_000:
            self.sent.append((topic, kwargs["value"], kwargs["headers"]))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class NoTransaction:
    async def start(self) -> None:
        pass

    async def commit(self) -> None:
        pass

    async def rollback(self) -> None:
        pass

    async def __aenter__(self) -> NoTransaction:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class NoConnection:
    """Postgres's stand-in for the consumer: transactions that cost nothing."""

    def transaction(self) -> NoTransaction:
        return NoTransaction()


def request_path(publisher: KafkaPublisher) -> Callable[[], Awaitable[None]]:
    app = FastAPI()

    @app.post("/callbacks/bank")
    @edge_route(hot=True)
    async def receive(request: Request) -> Response:
        body = await request.body()
        envelope = Envelope(type="bank.transfer.notify", correlation_id="c", data={"n": len(body)})
        await publisher.send_many([OutgoingMessage.of("notify", envelope, "acct")])
        return PlainTextResponse("success")

    edge = Edge(app)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/callbacks/bank",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    body = b'{"app_id":"x","biz_content":"' + b"a" * 600 + b'"}'

    async def receive_body() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def one() -> None:
        await edge(dict(scope), receive_body, send)  # type: ignore[arg-type]

    return one


def batch_path(
    publisher: KafkaPublisher, produced: InstantProducer, size: int
) -> Callable[[], Awaitable[None]]:
    async def handle(conn: Any, records: list[Any]) -> BatchOutcome:
        events = [
            ("ledger", "acct", Envelope(type="ledger.entry", correlation_id="c", data={"i": i}))
            for i in range(len(records))
        ]
        outbox_writes(events)
        return BatchOutcome()

    consumer = BatchConsumer(Settings(), None, publisher, "g", "notify", handle)  # type: ignore[arg-type]
    consumer._conn = NoConnection()  # type: ignore[assignment]
    sent = produced.sent[-size:]
    records = [
        ConsumerRecord("notify", 0, i, 0, 0, b"acct", value, None, len(value), 0, tuple(headers))
        for i, (_, value, headers) in enumerate(sent)
    ]

    async def one() -> None:
        await consumer._process_once(records)

    return one


async def timed(run: Callable[[], Awaitable[None]], count: int) -> float:
    """CPU seconds of the whole process (the exporter's thread included) for ``count`` runs:
    on a shared box, wall time measures the neighbours as much as the code."""
    started = time.process_time()
    for _ in range(count):
        await run()
    return time.process_time() - started


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    produced = InstantProducer()
    kafka.make_producer = lambda settings, **o: produced  # type: ignore[assignment,return-value]
    publisher = KafkaPublisher(Settings())
    request = request_path(publisher)
    await timed(request, 1000)  # warm-up, and records for the batches
    batch = batch_path(publisher, produced, args.batch)
    await timed(batch, 10)
    per_request: list[float] = []
    per_record: list[float] = []
    for _ in range(args.rounds):
        per_request.append(await timed(request, args.requests) / args.requests * 1e6)
        batches = max(1, args.requests // args.batch)
        per_record.append(await timed(batch, batches) / (batches * args.batch) * 1e6)
    return {
        "mode": args.mode,
        "traceparent_sent": any(k == "traceparent" for _, _, h in produced.sent[-5:] for k, _ in h),
        "request_us": round(statistics.median(per_request), 1),
        "request_us_all": [round(x, 1) for x in per_request],
        "batch_record_us": round(statistics.median(per_record), 2),
        "batch_record_us_all": [round(x, 2) for x in per_record],
        "batch": args.batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=("on", "off", "none"), required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sink = None
    if args.mode != "none":
        tracing = importlib.import_module("fundhub.common.tracing")
        if args.mode == "on":
            sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            tracing.configure(f"http://127.0.0.1:{port}", "bench")
    try:
        result = asyncio.run(measure(args))
    finally:
        if args.mode != "none":
            tracing.shutdown()
        if sink is not None:
            sink.terminate()
            sink.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
