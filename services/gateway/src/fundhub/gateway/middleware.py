"""Per-request correlation id and metrics, as plain ASGI (no per-request task group)."""

from __future__ import annotations

import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fundhub.common.logging import new_correlation_id
from fundhub.gateway.metrics import HTTP_LATENCY, HTTP_REQUESTS

HEADER_CORRELATION = b"x-correlation-id"
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


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


class CorrelationMiddleware:
    """Adopts the caller's X-Correlation-Id when it is safe to log, else makes one; echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = begin_request(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (HEADER_CORRELATION, correlation_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            label = getattr(scope.get("route"), "path", "unmatched")
            HTTP_LATENCY.labels(label).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(label, str(status)).inc()
