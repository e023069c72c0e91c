"""The response shape of the supplier-payment contract: statusCode, bizCode, errorCode, msg."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import Request
from fastapi.responses import Response

from fundhub.common.clock import iso_utc, utcnow
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.signing import body_signature


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def success(payload: dict[str, Any], status: int = 200, biz_code: str = "SUCCESS") -> JSONBody:
    body = {"statusCode": status, "bizCode": biz_code, "timestamp": iso_utc(utcnow()), **payload}
    return JSONBody(body, status_code=status)


def failure(error: ErrorCode, message: str | None = None) -> JSONBody:
    body = {
        "statusCode": error.http_status,
        "bizCode": "FAILED",
        "errorCode": error.code,
        "msg": message or error.default_message,
        "timestamp": iso_utc(utcnow()),
    }
    return JSONBody(body, status_code=error.http_status)


HEADER_SIGNATURE = "X-Signature"


def signed(request: Request, response: Response) -> Response:
    """Sign the body with the caller's secret, so clients can trust what they read.

    Only once the caller is authenticated: an anonymous refusal has no key to sign with.
    """
    key = getattr(request.state, "api_key", None)
    if key is not None:
        response.headers[HEADER_SIGNATURE] = body_signature(key.secret, bytes(response.body))
    return response


log = structlog.get_logger(__name__)

# The database out of reach (refused or dropped connections, a pool or statement timeout): the
# request may be sent again as it is, so the caller is told to retry rather than of a bug.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def refusal_response(request: Request, exc: Exception) -> Response:
    """What a request that raised answers: its refusal (signed once authenticated), 503 when a
    dependency is out of reach, else 500."""
    if isinstance(exc, FundhubError):
        return signed(request, failure(exc.error, exc.message))
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.error("request_unavailable", error=f"{type(exc).__name__}: {exc}")
        return signed(request, failure(ErrorCode.UNAVAILABLE))
    log.exception("request_failed", exc_info=exc)
    return failure(ErrorCode.INTERNAL)
