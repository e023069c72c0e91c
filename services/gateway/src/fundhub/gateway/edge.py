"""The one request pipeline: every HTTP request to the gateway passes here, and only here.

In order, for every route: the correlation id (adopted or made, echoed, bound for logs), the
route's body limit (enforced while reading, before anything parses the body), the handler, the
mapping of whatever it raised to an answer (one table for every route), and the metrics. What
later applies to every request (the audit log, rate limits) belongs here too.

Routes are FastAPI's, so ``/openapi.json`` describes exactly the functions that serve them. A
route marked ``hot`` (the bank's callback and payout submission, which run at the callers' full
rate) is called by this pipeline directly, skipping the framework's middleware stack, router and
exception machinery, which cost more CPU than those routes' own work; the others go through
FastAPI, with the body already read and limited here. Either way the same steps apply.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from fundhub.audit.entry import error_code_of
from fundhub.common import tracing
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.logging import new_correlation_id
from fundhub.common.retry import CONNECTION_LOST
from fundhub.gateway.metrics import ANSWERS, HTTP_LATENCY, HTTP_REQUESTS
from fundhub.gateway.responses import failure, signed_for
from fundhub.gateway.spool import STATE_KEY, ClientGone, SpooledBody, body_chunks, spool_body

log = structlog.get_logger(__name__)

HEADER_CORRELATION = b"x-correlation-id"
MAX_BODY_BYTES = 1024 * 1024
# Not an HTTP answer: the client left before the request was whole (nginx's code for it).
CLIENT_GONE = 499
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_UNMATCHED = "unmatched"
# The probes: a trace every few seconds, of nothing.
UNTRACED = frozenset({"/healthz", "/readyz"})

# The database out of reach: the request may be sent again as it is, so the caller is told to
# retry (503 E013) rather than of a bug. One list with the retrying loops (``common.retry``).
UNAVAILABLE_ERRORS = CONNECTION_LOST

Endpoint = Callable[[Request], Awaitable[Response]]
RefusalRenderer = Callable[[ErrorCode, str], Response]


@dataclass(frozen=True)
class RouteSpec:
    """What the pipeline needs to know of a route before it runs it."""

    body_limit: int = MAX_BODY_BYTES
    hot: bool = False  # called directly, without the framework's stack
    refusal: RefusalRenderer = failure  # how a refusal reads on this route
    # A file upload: the body spooled to a bounded temporary file (``spool.spooled_body``),
    # not held in memory; only these media types are read (else E075, before the body).
    spool: bool = False
    media_types: frozenset[str] = frozenset()


DEFAULT_SPEC = RouteSpec()


AnyEndpoint = TypeVar("AnyEndpoint", bound=Callable[..., Awaitable[Response]])


def edge_route(**spec: Any) -> Callable[[AnyEndpoint], AnyEndpoint]:
    """Declare a route's ``RouteSpec`` on its endpoint (apply below FastAPI's decorator)."""

    def mark(endpoint: AnyEndpoint) -> AnyEndpoint:
        endpoint.__edge_spec__ = RouteSpec(**spec)  # type: ignore[attr-defined]
        return endpoint

    return mark


def error_response(scope: Scope, exc: BaseException, spec: RouteSpec = DEFAULT_SPEC) -> Response:
    """What a request that raised answers: its refusal (signed once authenticated), 503 when a
    dependency is out of reach, else the one E500 body, on every route."""
    if isinstance(exc, FundhubError):
        refusal = spec.refusal(exc.error, exc.message)
        refusal.headers.update(exc.headers)
        return signed_for(scope, refusal)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.error("request_unavailable", error=f"{type(exc).__name__}: {exc}")
        return signed_for(
            scope, spec.refusal(ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE.default_message)
        )
    log.exception("request_failed", exc_info=exc)
    return failure(ErrorCode.INTERNAL)


def begin_request(scope: Scope) -> str:
    """Adopt or make the request's correlation id, keep it in the scope and bind it for logs."""
    given = next((v for k, v in scope["headers"] if k == HEADER_CORRELATION), b"")
    correlation_id = given.decode() if _SAFE_ID.match(given) else new_correlation_id()
    scope.setdefault("state", {})["correlation_id"] = correlation_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        correlation_id=correlation_id, method=scope["method"], path=scope["path"]
    )
    return correlation_id


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with E011 as soon as it is known to exceed ``limit`` bytes."""
    return b"".join([chunk async for chunk, _ in body_chunks(receive, limit)])


def _check_media_type(scope: Scope, allowed: frozenset[str]) -> None:
    declared = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    media_type = declared.split(b";", 1)[0].strip().lower().decode("latin-1")
    if allowed and media_type not in allowed:
        raise FundhubError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"Content-Type: one of {', '.join(sorted(allowed))}"
        )


def _declared_too_large(scope: Scope, limit: int) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) > limit
    return False


@dataclass
class Answer:
    """An answer as it will go on the wire: whichever kind of route made it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def of(cls, response: Response) -> Answer:
        return cls(response.status_code, list(response.raw_headers), bytes(response.body))

    @classmethod
    def of_messages(cls, messages: list[Message]) -> Answer:
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return cls(start["status"], list(start.get("headers", ())), body)


@dataclass(frozen=True)
class Exchange:
    """One request and its answer, as the pipeline saw them, for what observes every request
    (the audit log). ``scope["state"]`` holds what the handler learned (``api_key``)."""

    scope: Scope
    route: str
    correlation_id: str
    body: bytes
    answer: Answer
    started: float


# A guard runs before the body is read and refuses by raising FundhubError (a rate limit);
# an observer sees every answer before it is sent and may replace it by raising (an audit
# record that cannot be made durable makes the answer a 503).
Guard = Callable[[Scope, str], Awaitable[None]]
Observer = Callable[[Exchange], Awaitable[None]]


class _Captured:
    """The framework's answer, held until it has finished without raising."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)


class Edge:
    """The ASGI application uvicorn serves: the pipeline above, in front of the FastAPI app."""

    def __init__(
        self,
        app: FastAPI,
        guards: Sequence[Guard] = (),
        observers: Sequence[Observer] = (),
    ) -> None:
        self.app = app
        self._guards = tuple(guards)
        self._observers = tuple(observers)
        hidden = [r for r in app.routes if not isinstance(r, APIRoute | Route)]
        if hidden:
            # An included router (or a mount) hides its routes from this table: their specs
            # would be ignored and the hot routes would quietly take the framework's path.
            raise TypeError(f"routes the pipeline cannot see: {hidden!r}; add routes directly")
        self._routes: list[tuple[APIRoute, RouteSpec]] = [
            (route, getattr(route.endpoint, "__edge_spec__", DEFAULT_SPEC))
            for route in app.routes
            if isinstance(route, APIRoute)
        ]
        self._hot: dict[tuple[str, str], tuple[APIRoute, RouteSpec]] = {
            (method, route.path): (route, spec)
            for route, spec in self._routes
            if spec.hot
            for method in route.methods or ()
        }
        self._latency: dict[str, Any] = {}
        self._answers: dict[tuple[str, str], Any] = {}

    def _resolve(self, scope: Scope) -> tuple[APIRoute | None, RouteSpec]:
        hot = self._hot.get((scope["method"], scope["path"]))
        if hot is not None:
            return hot
        for route, spec in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route, spec
        return None, DEFAULT_SPEC

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        if tracing.ON and scope["path"] not in UNTRACED:
            with tracing.span(
                scope["method"],
                SpanKind.SERVER,
                # A fresh trace per request: a caller's traceparent is not adopted.
                parent=Context(),
                attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
            ):
                await self._serve(scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        correlation_id = begin_request(scope)
        route, spec = self._resolve(scope)
        label = route.path if route is not None else _UNMATCHED
        if tracing.ON:
            tracing.name_route(scope["method"], label, correlation_id)
        body = b""
        spooled: SpooledBody | None = None
        try:
            if _declared_too_large(scope, spec.body_limit):
                raise FundhubError(
                    ErrorCode.PAYLOAD_TOO_LARGE, f"body: more than {spec.body_limit} bytes"
                )
            for guard in self._guards:
                await guard(scope, label)
            if spec.spool:
                _check_media_type(scope, spec.media_types)
                spooled = scope["state"][STATE_KEY] = await spool_body(receive, spec.body_limit)
            else:
                body = await read_body(receive, spec.body_limit)
            answer = await self._answer(scope, route, spec, body, receive)
        except ClientGone:
            log.info("client_gone")
            self._observe(label, CLIENT_GONE, started, b"")
            return
        except Exception as exc:
            answer = Answer.of(error_response(scope, exc, spec))
        finally:
            if spooled is not None:
                spooled.close()
        if self._observers:
            answer = await self._observed(
                Exchange(scope, label, correlation_id, body, answer, started), spec
            )
        answer.headers.append((HEADER_CORRELATION, correlation_id.encode()))
        if tracing.ON:
            tracing.note_status(answer.status)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
        self._observe(label, answer.status, started, answer.body)

    async def _answer(
        self,
        scope: Scope,
        route: APIRoute | None,
        spec: RouteSpec,
        body: bytes,
        receive: Receive,
    ) -> Answer:
        if route is not None and spec.hot:
            scope["app"] = self.app
            request = Request(scope, receive)
            request._body = body  # Starlette's own cache: request.body() returns these
            return Answer.of(await route.endpoint(request))
        return Answer.of_messages(await self._through_framework(scope, body, receive))

    async def _observed(self, exchange: Exchange, spec: RouteSpec) -> Answer:
        """Each observer in turn; one that raises replaces the answer, and those after it see
        the replacement (so the audit log, last, records what finally leaves)."""
        for observer in self._observers:
            try:
                await observer(exchange)
            except Exception as exc:
                answer = Answer.of(error_response(exchange.scope, exc, spec))
                exchange = replace(exchange, answer=answer)
        return exchange.answer

    async def _through_framework(
        self, scope: Scope, body: bytes, receive: Receive
    ) -> list[Message]:
        """Run FastAPI on the body read here; its answer, or what it raised (never half of both)."""
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        captured = _Captured()
        await self.app(scope, replay, captured.send)
        return captured.messages

    def _observe(self, label: str, status: int, started: float, body: bytes) -> None:
        latency = self._latency.get(label)
        if latency is None:
            latency = self._latency[label] = HTTP_LATENCY.labels(label)
        latency.observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(label, str(status)).inc()
        # Only refusals are read for their code: a success costs no parse.
        code = "OK" if status < 400 else answer_code(status, body)
        answers = self._answers.get((label, code))
        if answers is None:  # label lookups take a lock: once per route and code
            answers = self._answers[(label, code)] = ANSWERS.labels(label, code)
        answers.inc()


_KNOWN_CODES = frozenset(code.code for code in ErrorCode)


def answer_code(status: int, body: bytes) -> str:
    """A refusal's error code as a label: only codes of the table (the set of series stays
    bounded whatever a body says), else the status."""
    code = error_code_of(body)
    return code if code in _KNOWN_CODES else f"HTTP_{status}"
