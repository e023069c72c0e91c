"""The response shape of the supplier-payment contract: statusCode, bizCode, errorCode, msg."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from fundhub.common.clock import iso_utc, utcnow
from fundhub.common.errors import ErrorCode
from fundhub.common.signing import body_signature

HEADER_SIGNATURE = "X-Signature"


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


def signed_for(scope: Scope, response: Response) -> Response:
    """Sign the body with the caller's secret, so clients can trust what they read.

    Only once the caller is authenticated: an anonymous refusal has no key to sign with.
    """
    key = scope.get("state", {}).get("api_key")
    if key is not None:
        response.headers[HEADER_SIGNATURE] = body_signature(key.secret, bytes(response.body))
        # Balances and payouts are one tenant's data: no shared or browser cache may keep them.
        response.headers["Cache-Control"] = "no-store"
    return response


def signed(request: Request, response: Response) -> Response:
    return signed_for(request.scope, response)
