"""``/v1/payouts``: accept supplier payouts idempotently, read them, and their client callbacks.

Acceptance writes the payout and its command in one transaction (the outbox relays the command
to payment-worker), so an answered 202 is never lost and a request that was not answered can be
sent again with the same requestId. Path and query values are checked after authentication so
that every answer to an authenticated caller, a refusal included, is signed.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.payout_request import (
    PAY_ID_PATTERN,
    InvalidPayout,
    PayoutRequest,
    parse_payout_request,
)
from fundhub.common.payout_wire import http_status, payout_body
from fundhub.gateway.auth import (
    Authenticator,
    nonce_replayed,
    request_nonce,
    require_account,
    require_scope,
)
from fundhub.gateway.metrics import HTTP_LATENCY, HTTP_REQUESTS
from fundhub.gateway.middleware import HEADER_CORRELATION, begin_request
from fundhub.gateway.payout_store import NonceUsed, PayoutStore
from fundhub.gateway.responses import JSONBody, refusal_response, signed, success
from fundhub.gateway.stores import ApiKey

PAYOUTS_PATH = "/v1/payouts"
SCOPE_PAYOUTS_WRITE = "payouts:write"
SCOPE_PAYOUTS_READ = "payouts:read"
SCOPE_ADMIN = "admin"
MAX_BODY_BYTES = 1024 * 1024
REQUEST_ID_MAX = 64
_SUBMIT_LATENCY = HTTP_LATENCY.labels(PAYOUTS_PATH)


async def read_limited_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with E011 as soon as it is known to exceed ``limit`` bytes.

    Read here first so an oversized body is never buffered whole; the authenticator then reads
    the same bytes from Starlette's cache.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FundhubError(ErrorCode.PAYLOAD_TOO_LARGE, f"body: more than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FundhubError(ErrorCode.PAYLOAD_TOO_LARGE, f"body: more than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: request.body() returns these bytes
    return body


def _request_body_doc() -> dict[str, Any]:
    """The body's JSON schema for /docs (the body is parsed by hand: raw bytes are signed)."""
    schema = PayoutRequest.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


def _payout_response(request: Request, row: asyncpg.Record) -> Response:
    body = payout_body(row)
    return signed(request, JSONBody(body, status_code=http_status(body["state"])))


def _not_found(what: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"payout {what} not found")


async def submit_payout(request: Request) -> Response:
    """``POST /v1/payouts``: authenticate, validate, admit in one statement (nonce included)."""
    await read_limited_body(request)
    auth: Authenticator = request.app.state.authenticator
    key = await auth.authenticate(request, take_nonce=False)
    require_scope(key, SCOPE_PAYOUTS_WRITE)
    try:
        payout = parse_payout_request(await request.body())
    except InvalidPayout as exc:
        raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
    require_account(key, payout.payer_account_id)
    correlation_id: str = getattr(request.state, "correlation_id", payout.request_id)
    payouts: PayoutStore = request.app.state.payouts
    try:
        admission = await payouts.admit(key.key_id, request_nonce(request), payout, correlation_id)
    except NonceUsed:
        raise nonce_replayed(key.key_id) from None
    return _payout_response(request, admission.row)


class PayoutSubmitFastPath:
    """An outer ASGI layer: ``POST /v1/payouts`` skips Starlette's middleware, router and
    exception stack (they cost more CPU than the payout's own work), with the same answers:
    the correlation id, the refusals of ``refusal_response`` and the HTTP metrics."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PAYOUTS_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation_id = begin_request(scope)
        scope["app"] = self._api
        request = Request(scope, receive)
        try:
            response = await submit_payout(request)
        except Exception as exc:
            response = refusal_response(request, exc)
        response.headers[HEADER_CORRELATION.decode()] = correlation_id
        await response(scope, receive, send)
        _SUBMIT_LATENCY.observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(PAYOUTS_PATH, str(response.status_code)).inc()


def payouts_router() -> APIRouter:
    router = APIRouter(prefix=PAYOUTS_PATH, tags=["payouts"])

    async def authenticate(request: Request, scope: str) -> ApiKey:
        auth: Authenticator = request.app.state.authenticator
        key = await auth.authenticate(request)
        require_scope(key, scope)
        return key

    def store(request: Request) -> PayoutStore:
        payouts: PayoutStore = request.app.state.payouts
        return payouts

    async def owned_payout(request: Request, key: ApiKey, pay_id: str) -> asyncpg.Record:
        row = await store(request).by_pay_id(pay_id) if PAY_ID_PATTERN.match(pay_id) else None
        if row is None:
            raise _not_found(pay_id)
        require_account(key, row["payer_account_id"])
        return row

    @router.post(
        "",
        summary="Submit a supplier payout (idempotent by requestId)",
        status_code=202,
        responses={200: {"description": "requestId seen before: the payout, final"}},
        openapi_extra=_request_body_doc(),
    )
    async def create_payout(request: Request) -> Response:
        # Served by PayoutSubmitFastPath; kept equivalent for the docs and direct mounting.
        return await submit_payout(request)

    @router.get("", summary="Find a payout by the requestId it was created with")
    async def find_payout(
        request: Request, requestId: str | None = Query(default=None)
    ) -> Response:
        key = await authenticate(request, SCOPE_PAYOUTS_READ)
        if not requestId or len(requestId) > REQUEST_ID_MAX:
            raise FundhubError(
                ErrorCode.INVALID_PARAMETER, "requestId: required, 1 to 64 characters"
            )
        row = await store(request).by_request_id(key.key_id, requestId)
        if row is None:
            raise _not_found(f"with requestId {requestId}")
        require_account(key, row["payer_account_id"])
        return _payout_response(request, row)

    @router.get("/{payId}", summary="A payout's current state")
    async def get_payout(request: Request, payId: str) -> Response:
        key = await authenticate(request, SCOPE_PAYOUTS_READ)
        return _payout_response(request, await owned_payout(request, key, payId))

    @router.get("/{payId}/callbacks", summary="Callback deliveries to callbackUrl and attempts")
    async def list_callbacks(request: Request, payId: str) -> Response:
        key = await authenticate(request, SCOPE_PAYOUTS_READ)
        await owned_payout(request, key, payId)
        deliveries = await store(request).callbacks(payId)
        return signed(request, success({"payId": payId, "deliveries": deliveries}))

    @router.post(
        "/{payId}/callbacks/replay",
        summary="Send the payout's callbacks again (operators, scope admin)",
        status_code=202,
    )
    async def replay_callbacks(request: Request, payId: str) -> Response:
        await read_limited_body(request)
        key = await authenticate(request, SCOPE_ADMIN)
        await owned_payout(request, key, payId)
        replayed = await store(request).replay_callbacks(payId)
        body = {"payId": payId, "replayed": replayed}
        return signed(request, success(body, status=202, biz_code="PROCESSING"))

    return router
