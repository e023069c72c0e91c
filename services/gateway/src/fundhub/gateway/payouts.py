"""``/v1/payouts``: accept supplier payouts idempotently, read them, and their client callbacks.

Acceptance writes the payout and its command in one statement (the outbox relays the command
to payment-worker), so an answered 202 is never lost and a request that was not answered can be
sent again with the same requestId. Path and query values are checked after authentication so
that every answer to an authenticated caller, a refusal included, is signed.
"""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_ADMIN, SCOPE_PAYOUTS_READ, SCOPE_PAYOUTS_WRITE, ApiKey
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import (
    authenticated,
    nonce_replayed,
    request_nonce,
    require_account,
)
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import JSONBody, signed, success
from fundhub.gateway.schemas import (
    CallbackDeliveries,
    CallbacksReplayed,
    Payout,
    answers,
    request_body,
)
from fundhub.payouts.admission import NonceUsed, PayoutStore
from fundhub.payouts.request import (
    PAY_ID_PATTERN,
    REQUEST_ID_PATTERN,
    InvalidPayout,
    PayoutRequest,
    parse_payout_request,
)
from fundhub.payouts.wire import http_status, payout_body
from fundhub.webhooks import store as webhooks
from fundhub.webhooks.destinations import CallbackAddresses

PAYOUTS_PATH = "/v1/payouts"
# A payout is a few hundred bytes; its extension at most 4 KiB of JSON (payouts.request): 16 KiB
# leaves room for whitespace and escapes, and is all an authenticated caller can make us read.
MAX_PAYOUT_BODY_BYTES = 16 * 1024
_PAYOUT_READ = {
    200: (Payout, "The payout, final (SUCCESS, FAILED or RETURNED)"),
    202: (Payout, "The payout, still PROCESSING"),
}


def _payout_response(request: Request, row: asyncpg.Record) -> Response:
    body = payout_body(row)
    return signed(request, JSONBody(body, status_code=http_status(body["state"])))


def _not_found(what: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"payout {what} not found")


def _store(request: Request) -> PayoutStore:
    payouts: PayoutStore = request.app.state.payouts
    return payouts


async def _owned_payout(request: Request, key: ApiKey, pay_id: str) -> asyncpg.Record:
    """The payout, if the key holds its payer account. Another tenant's payout answers exactly
    as a missing one: a 403 would tell the caller that the payId exists."""
    row = await _store(request).by_pay_id(pay_id) if PAY_ID_PATTERN.match(pay_id) else None
    if row is None or not key.may_access(row["payer_account_id"]):
        raise _not_found(pay_id)
    return row


def payouts_router(callbacks: CallbackAddresses) -> APIRouter:
    """``callbacks``: where a payout's callbackUrl may point (FUNDHUB_CALLBACK_ALLOW_CIDRS)."""
    router = APIRouter(prefix=PAYOUTS_PATH, tags=["payouts"])

    @router.post(
        "",
        summary="Submit a supplier payout (idempotent by requestId)",
        status_code=202,
        responses=answers(
            {
                202: (Payout, "Accepted (or requestId seen before): the payout, PROCESSING"),
                200: (Payout, "requestId seen before: the payout, final"),
            },
            *(400, 401, 403, 409, 413, 503),
        ),
        openapi_extra=request_body(PayoutRequest),
    )
    @edge_route(hot=True, body_limit=MAX_PAYOUT_BODY_BYTES)
    async def create_payout(request: Request) -> Response:
        """Authenticate, validate, admit in one statement (the nonce included)."""
        key = await authenticated(request, SCOPE_PAYOUTS_WRITE, take_nonce_now=False)
        try:
            payout = parse_payout_request(await request.body(), callbacks)
        except InvalidPayout as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        require_account(key, payout.payer_account_id)
        correlation_id: str = request.state.correlation_id
        try:
            admission = await _store(request).admit(
                key.key_id, request_nonce(request), payout, correlation_id
            )
        except NonceUsed:
            raise nonce_replayed(key.key_id) from None
        return _payout_response(request, admission.row)

    @router.get(
        "",
        summary="Find a payout by the requestId it was created with",
        responses=answers(_PAYOUT_READ, 400, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def find_payout(
        request: Request, requestId: str | None = Query(default=None)
    ) -> Response:
        key = await authenticated(request, SCOPE_PAYOUTS_READ)
        if not requestId or not REQUEST_ID_PATTERN.fullmatch(requestId):
            raise FundhubError(
                ErrorCode.INVALID_PARAMETER,
                "requestId: required, 1 to 64 characters of A-Z a-z 0-9 . _ : -",
            )
        row = await _store(request).by_request_id(key.key_id, requestId)
        if row is None or not key.may_access(row["payer_account_id"]):
            raise _not_found(f"with requestId {requestId}")
        return _payout_response(request, row)

    @router.get(
        "/{payId}",
        summary="A payout's current state",
        responses=answers(_PAYOUT_READ, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def get_payout(request: Request, payId: str) -> Response:
        key = await authenticated(request, SCOPE_PAYOUTS_READ)
        return _payout_response(request, await _owned_payout(request, key, payId))

    @router.get(
        "/{payId}/callbacks",
        summary="Callback deliveries to callbackUrl and attempts",
        responses=answers({200: (CallbackDeliveries, "The deliveries")}, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def list_callbacks(request: Request, payId: str) -> Response:
        key = await authenticated(request, SCOPE_PAYOUTS_READ)
        await _owned_payout(request, key, payId)
        deliveries = await webhooks.deliveries_of(request.app.state.pool, payId)
        return signed(request, success({"payId": payId, "deliveries": deliveries}))

    @router.post(
        "/{payId}/callbacks/replay",
        summary="Send the payout's callbacks again (operators, scope admin)",
        status_code=202,
        responses=answers(
            {202: (CallbacksReplayed, "The deliveries will be sent again")}, 401, 403, 404, 503
        ),
    )
    @edge_route(body_limit=0)
    async def replay_callbacks(request: Request, payId: str) -> Response:
        key = await authenticated(request, SCOPE_ADMIN)
        await _owned_payout(request, key, payId)
        async with request.app.state.pool.acquire() as conn:
            replayed = await webhooks.replay(conn, payId)
        body = {"payId": payId, "replayed": replayed}
        return signed(request, success(body, status=202, biz_code="PROCESSING"))

    return router
