"""Settlement's routes: the platform's confirmation of an order's settlement, and merchants'
withdrawals to their verified settlement accounts.

``POST /v1/orders/{orderNo}/settle`` records a CONFIRMED settlement in one transaction, shared
with the confirmations arriving at the same time (``settlement.confirm.Confirmations``; the
scheduler in payment-worker registers it with the depository). ``POST /v1/merchants/{merchantId}
/withdrawals`` admits a payout from the merchant's account to its verified one, the request's
nonce in the payout's own statement (``payouts.admission``). Another tenant's order or merchant
answers exactly as a missing one (404). Path values are checked after authentication, so every
answer to a known caller is signed.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fundhub.access.keys import (
    SCOPE_MERCHANTS_READ,
    SCOPE_MERCHANTS_WRITE,
    SCOPE_ORDERS_READ,
    SCOPE_ORDERS_WRITE,
)
from fundhub.access.store import NonceReplayed
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import (
    authenticated,
    nonce_replayed,
    request_nonce,
)
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import JSONBody, signed
from fundhub.gateway.schemas import Settlement, Withdrawal, answers
from fundhub.payouts.admission import NonceUsed, PayoutStore
from fundhub.settlement import confirm, withdrawals
from fundhub.settlement.wire import settlement_body, withdrawal_body

# What a path value can be at all; anything else is answered as not found without a lookup.
ORDER_NO = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MERCHANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# {"requestId": 64 characters, "amount": 16 digits} is under 120 bytes: 1 KiB is plenty.
MAX_WITHDRAWAL_BODY_BYTES = 1024

_SETTLE_CONFLICTS = (
    409,
    "Refused: the order is not paid (E034_ORDER_NOT_PAID), settled already "
    "(E040_ORDER_SETTLED), fully refunded (E041_ORDER_FULLY_REFUNDED), or a refund of it is "
    "being taken (E045_REFUND_IN_PROGRESS); msg says which",
)
_WITHDRAWAL_CONFLICTS = (
    409,
    "Refused: no verified settlement account (E042_NO_VERIFIED_ACCOUNT), or the requestId "
    "was used with another amount (E010_IDEMPOTENCY_CONFLICT)",
)
_WITHDRAWAL_UNPROCESSABLE = (
    422,
    "Refused: the amount is more than the merchant's available balance "
    "(E004_INSUFFICIENT_FUNDS), or the merchant is not ACTIVE (E032_MERCHANT_NOT_ACTIVE)",
)
_WITHDRAWAL_READ = {
    200: (Withdrawal, "The withdrawal, final (SUCCESS, FAILED or RETURNED)"),
    202: (Withdrawal, "The withdrawal, still PROCESSING"),
}


def _withdrawal(request: Request, body: dict[str, object]) -> Response:
    return signed(request, JSONBody(body, status_code=int(str(body["statusCode"]))))


def settlement_router() -> APIRouter:
    router = APIRouter(tags=["settlement"])

    @router.post(
        "/v1/orders/{orderNo}/settle",
        summary="Settle a paid order now: its parts' pending to available, through the "
        "depository (idempotent while under way)",
        status_code=202,
        responses=answers(
            {
                202: (
                    Settlement,
                    "Recorded (or already under way): the settlement, PENDING or "
                    "PROCESSING; its outcome goes to the order's notifyUrl",
                ),
            },
            401,
            403,
            (404, "Refused (E009_NOT_FOUND): no such order"),
            _SETTLE_CONFLICTS,
            503,
        ),
    )
    @edge_route(body_limit=0)
    async def settle_order(request: Request, orderNo: str) -> Response:
        # The nonce is recorded in the confirmation's own transaction: one round trip less.
        key = await authenticated(request, SCOPE_ORDERS_WRITE, take_nonce_now=False)
        if not ORDER_NO.fullmatch(orderNo):
            raise confirm.not_found(orderNo[:64])
        confirmations: confirm.Confirmations = request.app.state.confirmations
        try:
            confirmed = await confirmations.confirm(key.key_id, orderNo, request_nonce(request))
        except NonceReplayed:
            raise nonce_replayed(key.key_id) from None
        body = settlement_body(confirmed.row)
        return signed(request, JSONBody(body, status_code=body["statusCode"]))

    @router.get(
        "/v1/orders/{orderNo}/settlement",
        summary="An order's settlement: the live or settled one, else the last refused one",
        responses=answers(
            {
                200: (Settlement, "The settlement, final (SETTLED, or REFUSED with the reason)"),
                202: (Settlement, "The settlement, under way (PENDING or PROCESSING)"),
            },
            401,
            403,
            (404, "Refused (E009_NOT_FOUND): no such order, or none of its settlements yet"),
            503,
        ),
    )
    @edge_route(body_limit=0)
    async def get_settlement(request: Request, orderNo: str) -> Response:
        key = await authenticated(request, SCOPE_ORDERS_READ)
        row = None
        if ORDER_NO.fullmatch(orderNo):
            row = await confirm.latest(request.app.state.pool, key.key_id, orderNo)
        if row is None:
            raise FundhubError(ErrorCode.NOT_FOUND, f"no settlement of order {orderNo[:64]}")
        body = settlement_body(row)
        return signed(request, JSONBody(body, status_code=body["statusCode"]))

    @router.post(
        "/v1/merchants/{merchantId}/withdrawals",
        summary="Withdraw a merchant's available balance to its verified settlement account "
        "(idempotent by requestId)",
        status_code=202,
        responses=answers(
            {
                202: (Withdrawal, "Accepted (or requestId seen before): PROCESSING"),
                200: (Withdrawal, "requestId seen before: the withdrawal, final"),
            },
            400,
            401,
            403,
            (404, "Refused (E009_NOT_FOUND): no such merchant"),
            _WITHDRAWAL_CONFLICTS,
            413,
            _WITHDRAWAL_UNPROCESSABLE,
            503,
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": withdrawals.WithdrawalRequest.model_json_schema(by_alias=True)
                    }
                },
            }
        },
    )
    @edge_route(body_limit=MAX_WITHDRAWAL_BODY_BYTES)
    async def create_withdrawal(request: Request, merchantId: str) -> Response:
        key = await authenticated(request, SCOPE_MERCHANTS_WRITE, take_nonce_now=False)
        if not MERCHANT_ID.fullmatch(merchantId):
            raise withdrawals.not_found(merchantId[:40])
        try:
            wanted = withdrawals.parse_withdrawal(await request.body())
        except withdrawals.InvalidWithdrawal as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        payouts: PayoutStore = request.app.state.payouts
        try:
            done = await withdrawals.request(
                request.app.state.pool,
                payouts,
                key.key_id,
                request_nonce(request),
                merchantId,
                wanted,
                request.state.correlation_id,
            )
        except NonceUsed:
            raise nonce_replayed(key.key_id) from None
        return _withdrawal(request, withdrawal_body(done.row))

    @router.get(
        "/v1/merchants/{merchantId}/withdrawals/{requestId}",
        summary="A withdrawal's current state, by the requestId it was made with",
        responses=answers(_WITHDRAWAL_READ, 401, 403, (404, "Refused (E009_NOT_FOUND)"), 503),
    )
    @edge_route(body_limit=0)
    async def get_withdrawal(request: Request, merchantId: str, requestId: str) -> Response:
        key = await authenticated(request, SCOPE_MERCHANTS_READ)
        row = None
        if MERCHANT_ID.fullmatch(merchantId):
            row = await withdrawals.find(request.app.state.pool, key.key_id, merchantId, requestId)
        if row is None:
            raise FundhubError(
                ErrorCode.NOT_FOUND,
                f"withdrawal {requestId[:64]} of merchant {merchantId[:40]} not found",
            )
        return _withdrawal(request, withdrawal_body(row))

    return router
