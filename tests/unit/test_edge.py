"""The one request pipeline (gateway.edge): the same steps for hot and framework routes."""

from __future__ import annotations

import hashlib
from typing import IO, Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from fundhub.common import tracing
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.edge import CLIENT_GONE, Edge, Exchange, edge_route
from fundhub.gateway.responses import success
from fundhub.gateway.spool import spooled_body

LIMIT = 1000


def app() -> Edge:
    api = FastAPI()
    ran: list[str] = []
    files: list[IO[bytes]] = []

    @api.post("/hot")
    @edge_route(hot=True, body_limit=LIMIT)
    async def hot(request: Request) -> Response:
        ran.append("hot")
        if await request.body() == b"boom":
            raise KeyError("a bug")
        return success({"echo": (await request.body()).decode()})

    @api.post("/framework/{thing}")
    @edge_route(body_limit=LIMIT)
    async def framework(request: Request, thing: str) -> Response:
        ran.append("framework")
        if await request.body() == b"boom":
            raise KeyError("a bug")
        if thing == "refuse":
            raise FundhubError(ErrorCode.NOT_FOUND, "no such thing")
        return success({"echo": (await request.body()).decode()})

    def bank_style(error: ErrorCode, message: str) -> Response:
        return PlainTextResponse(f"fail: {message}", status_code=error.http_status)

    @api.post("/bank")
    @edge_route(hot=True, body_limit=LIMIT, refusal=bank_style)
    async def bank(request: Request) -> Response:
        return PlainTextResponse("success")

    @api.post("/upload")
    @edge_route(body_limit=LIMIT, spool=True, media_types=frozenset({"text/csv"}))
    async def upload(request: Request) -> Response:
        spooled = spooled_body(request)
        ran.append("upload")
        files.append(spooled.file)
        content = spooled.file.read()
        return success(
            {"inMemory": len(await request.body()), "file": content.decode(), "sha": spooled.sha256}
        )

    edge = Edge(api)
    edge.ran = ran  # type: ignore[attr-defined]
    edge.files = files  # type: ignore[attr-defined]
    return edge


async def call(
    edge: Edge, path: str, chunks: list[bytes], disconnect: bool = False, headers: Any = ()
) -> tuple[int | None, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"x-correlation-id", b"corr-123"), *headers],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "root_path": "",
    }
    messages = left = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await edge(scope, receive, send)  # type: ignore[arg-type]
    edge.unread = len(left)  # type: ignore[attr-defined]
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if start is None:
        return None, {}, body
    return start["status"], dict(start["headers"]), body


def counted(route: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "fundhub_gateway_http_requests_total", {"route": route, "status": str(status)}
    )
    return value or 0.0


async def test_both_kinds_of_route_answer_and_echo_the_correlation_id() -> None:
    edge = app()
    for path in ("/hot", "/framework/x"):
        status, headers, body = await call(edge, path, [b"he", b"llo"])
        assert status == 200 and orjson.loads(body)["echo"] == "hello"
        assert headers[b"x-correlation-id"] == b"corr-123"
    assert edge.ran == ["hot", "framework"]  # type: ignore[attr-defined]


async def test_an_unexpected_error_answers_the_same_e500_body_on_every_route() -> None:
    edge = app()
    answers = [await call(edge, path, [b"boom"]) for path in ("/hot", "/framework/x")]
    for status, headers, body in answers:
        parsed = orjson.loads(body)
        assert status == 500
        assert parsed["errorCode"] == "E500_INTERNAL" and parsed["bizCode"] == "FAILED"
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"x-correlation-id"] == b"corr-123"
    shapes = [{k: v for k, v in orjson.loads(b).items() if k != "timestamp"} for *_, b in answers]
    assert shapes[0] == shapes[1]


async def test_the_body_limit_holds_on_framework_routes_before_the_handler_runs() -> None:
    edge = app()
    for path in ("/hot", "/framework/x"):
        status, _, body = await call(edge, path, [b"x" * 600, b"x" * 600])
        assert status == 413 and orjson.loads(body)["errorCode"] == "E011_PAYLOAD_TOO_LARGE"
        declared = [(b"content-length", b"5000")]
        status, _, _ = await call(edge, path, [b"x"], headers=declared)
        assert status == 413
    assert edge.ran == []  # type: ignore[attr-defined]


CSV = [(b"content-type", b"text/csv; charset=utf-8")]


async def test_an_upload_is_spooled_to_a_file_that_is_gone_after_the_answer() -> None:
    edge = app()
    status, _, body = await call(edge, "/upload", [b"a,b\n", b"1,2\n"], headers=CSV)
    answer = orjson.loads(body)
    assert status == 200, answer
    assert (answer["inMemory"], answer["file"]) == (0, "a,b\n1,2\n")
    assert answer["sha"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert [f.closed for f in edge.files] == [True]  # type: ignore[attr-defined]


async def test_an_upload_past_its_cap_is_refused_while_read_and_one_of_another_type_unread() -> (
    None
):
    edge = app()
    chunks = [b"x" * 400] * 5  # the cap (1000) is passed by the third
    status, _, body = await call(edge, "/upload", chunks, headers=CSV)
    assert (status, orjson.loads(body)["errorCode"]) == (413, "E011_PAYLOAD_TOO_LARGE")
    assert edge.unread == 2  # type: ignore[attr-defined]
    for headers in ([(b"content-type", b"application/json")], []):
        status, _, body = await call(edge, "/upload", [b"{}"], headers=headers)
        assert (status, orjson.loads(body)["errorCode"]) == (415, "E075_UNSUPPORTED_MEDIA_TYPE")
        assert edge.unread == 1  # type: ignore[attr-defined]
    assert edge.ran == []  # type: ignore[attr-defined]


async def test_a_refusal_reads_as_the_route_says() -> None:
    edge = app()
    status, _, body = await call(edge, "/framework/refuse", [b""])
    assert status == 404 and orjson.loads(body)["errorCode"] == "E009_NOT_FOUND"
    status, _, body = await call(edge, "/bank", [b"y" * 2000])
    assert status == 413 and body == f"fail: body: more than {LIMIT} bytes".encode()


async def test_a_client_that_leaves_is_not_counted_as_bad_input() -> None:
    edge = app()
    before_gone, before_bad = counted("/hot", CLIENT_GONE), counted("/hot", 400)
    status, _, _ = await call(edge, "/hot", [b"half a bo"], disconnect=True)
    assert status is None  # nothing is answered to nobody
    assert counted("/hot", CLIENT_GONE) == before_gone + 1
    assert counted("/hot", 400) == before_bad
    assert edge.ran == []  # type: ignore[attr-defined]


async def test_guards_run_before_the_body_and_observers_see_every_answer() -> None:
    seen: list[tuple[str, int, bytes]] = []

    async def refuse_the_framework(scope: Any, route: str) -> None:
        if route.startswith("/framework"):
            raise FundhubError(ErrorCode.SCOPE_FORBIDDEN, "not today")

    async def record(exchange: Exchange) -> None:
        seen.append((exchange.route, exchange.answer.status, exchange.body))

    plain = app()
    edge = Edge(plain.app, guards=[refuse_the_framework], observers=[record])
    status, _, _ = await call(edge, "/framework/x", [b"never read"])
    assert status == 403
    status, _, body = await call(edge, "/hot", [b"hi"])
    assert status == 200 and orjson.loads(body)["echo"] == "hi"
    assert seen == [("/framework/{thing}", 403, b""), ("/hot", 200, b"hi")]


async def test_an_observer_that_fails_turns_the_answer_into_its_refusal() -> None:
    async def unavailable(exchange: Exchange) -> None:
        raise ConnectionRefusedError(111, "the audit log is out of reach")

    edge = Edge(app().app, observers=[unavailable])
    status, headers, body = await call(edge, "/hot", [b"hi"])
    assert status == 503 and orjson.loads(body)["errorCode"] == "E013_UNAVAILABLE"
    assert headers[b"x-correlation-id"] == b"corr-123"


async def test_a_database_restarting_under_a_request_is_unavailable_not_a_bug() -> None:
    """What a request meets while PostgreSQL restarts: its statement ended by the shutdown
    (57P01), a crash (57P02), the server starting or stopping (57P03), its connection gone.
    Each is a 503 the caller may retry, never the E500 of a bug."""
    restart_errors: list[BaseException] = [
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another server"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ]
    for error in restart_errors:

        async def meets(exchange: Exchange, error: BaseException = error) -> None:
            raise error

        status, _, body = await call(Edge(app().app, observers=[meets]), "/hot", [b"hi"])
        assert (status, orjson.loads(body)["errorCode"]) == (503, "E013_UNAVAILABLE"), error


def test_the_gateway_routes_are_all_seen_and_the_hot_ones_skip_the_framework() -> None:
    from fundhub.common.config import Settings
    from fundhub.common.sealing import generate_master_key
    from fundhub.gateway.app import create_app

    api = create_app(Settings(master_key=generate_master_key()))
    edge = Edge(api)
    assert set(edge._hot) == {
        ("POST", "/v1/payouts"),
        ("POST", "/callbacks/bank"),
        ("POST", "/callbacks/wechatpay"),
        ("POST", "/callbacks/alipay"),
    }
    for path, methods in api.openapi()["paths"].items():
        for method in methods:
            scope = {"type": "http", "method": method.upper(), "path": path.replace("{", "x")}
            route, _ = edge._resolve({**scope, "path": path.replace("{", "").replace("}", "")})
            assert route is not None, (method, path)


def test_an_included_router_is_refused_rather_than_silently_slow() -> None:
    from fastapi import APIRouter

    api = FastAPI()
    router = APIRouter()

    @router.get("/x")
    async def x() -> dict[str, str]:
        return {}

    api.include_router(router)
    try:
        Edge(api)
    except TypeError as exc:
        assert "cannot see" in str(exc)
    else:
        # A FastAPI whose include_router copies routes in is fine too: then they are seen.
        assert Edge(api)._resolve({"type": "http", "method": "GET", "path": "/x"})[0]


async def test_traced_each_request_is_a_server_span_named_by_its_route_probes_aside() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        edge = app()
        await call(edge, "/framework/refuse", [b"x"])
        await call(edge, "/hot", [b"boom"])
        await call(edge, "/readyz", [b""])
        given = b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"
        await call(edge, "/hot", [b"x"], headers=[(b"traceparent", given)])
    finally:
        tracing.shutdown()
    refused, failed, answered = exporter.get_finished_spans()
    # A caller's traceparent is not adopted: an outsider does not choose our traces.
    assert answered.parent is None and answered.context.trace_id != int("a" * 32, 16)
    assert refused.kind is SpanKind.SERVER and refused.parent is None
    assert refused.name == "POST /framework/{thing}"
    assert refused.attributes is not None and failed.attributes is not None
    assert refused.attributes["http.route"] == "/framework/{thing}"
    assert refused.attributes["url.path"] == "/framework/refuse"
    assert refused.attributes["fundhub.correlation_id"] == "corr-123"
    assert refused.attributes["http.response.status_code"] == 404
    assert refused.status.status_code is StatusCode.UNSET  # a refusal is not a fault
    assert (failed.name, failed.attributes["http.response.status_code"]) == ("POST /hot", 500)
    assert failed.status.status_code is StatusCode.ERROR
    assert refused.context.trace_id != failed.context.trace_id
