"""``/v1/merchants``: register sub-merchants, change their material, bind and verify their
settlement account, close them, and read them.

Each write is one transaction in ``merchants.admission`` (the merchant's row locked, the state
machine's decision, the rows and the command for payment-worker), so an answered 202 is never
lost and an unanswered request can be sent again: the registration by its merchantNo, the others
because sending the same thing twice changes nothing more. The tenant is the API key: another
tenant's merchant answers exactly as a missing one (404), before and after authentication alike.
Path and query values are checked after authentication, so every answer to a known caller is
signed, and identity data is masked in every answer (``merchants.wire``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_MERCHANTS_READ, SCOPE_MERCHANTS_WRITE, ApiKey
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import JSONBody, signed
from fundhub.gateway.schemas import Merchant, answers, request_body
from fundhub.merchants.admission import Answered, MerchantAdmission, not_found
from fundhub.merchants.ids import MERCHANT_ID_PATTERN
from fundhub.merchants.materials import (
    MERCHANT_NO_PATTERN,
    Confirmation,
    InvalidMerchant,
    Materials,
    Registration,
    SettlementAccount,
    parse_confirmation,
    parse_materials,
    parse_registration,
    parse_settlement_account,
)
from fundhub.merchants.wire import MerchantView, merchant_body
from fundhub.webhooks.destinations import CallbackAddresses

MERCHANTS_PATH = "/v1/merchants"
# A registration is about 1 KiB of JSON; 16 KiB leaves room for whitespace and escapes and is
# all an authenticated caller can make us read. An account or an amount is far smaller.
MAX_MATERIALS_BODY_BYTES = 16 * 1024
MAX_ACCOUNT_BODY_BYTES = 4 * 1024
MAX_AMOUNT_BODY_BYTES = 1024

_STATE_CONFLICT = (
    409,
    "Refused (E052_MERCHANT_STATE_CONFLICT): the merchant's state does not allow this now; "
    "msg says why",
)
_MERCHANT_READ = {
    200: (Merchant, "The merchant"),
    202: (Merchant, "The merchant, waiting on the depository (PENDING_REVIEW, CLOSING)"),
}
_MERCHANT_ACTED = {
    202: (Merchant, "Accepted: the merchant, with the change under way at the depository"),
    200: (Merchant, "Nothing new to do (the same as what stands): the merchant"),
}

T = TypeVar("T")


def _admission(request: Request) -> MerchantAdmission:
    merchants: MerchantAdmission = request.app.state.merchants
    return merchants


def _answer(request: Request, view: MerchantView, underway: bool) -> Response:
    body = merchant_body(view)
    if underway:
        body.update(statusCode=202, bizCode="PROCESSING")
    return signed(request, JSONBody(body, status_code=body["statusCode"]))


def _acted(request: Request, answered: Answered) -> Response:
    return _answer(request, answered.view, answered.underway)


def _merchant_id(request: Request) -> str:
    """The path's merchantId; one that can never be stored reads as not found."""
    merchant_id: str = request.path_params["merchantId"]
    if not MERCHANT_ID_PATTERN.fullmatch(merchant_id):
        raise not_found(merchant_id[:40])
    return merchant_id


async def _parsed(request: Request, parse: Callable[[bytes], T]) -> T:
    try:
        return parse(await request.body())
    except InvalidMerchant as exc:
        raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None


async def _writer(request: Request) -> tuple[ApiKey, str]:
    key = await authenticated(request, SCOPE_MERCHANTS_WRITE)
    return key, _merchant_id(request)


def merchants_router(callbacks: CallbackAddresses) -> APIRouter:
    """``callbacks``: where a merchant's notifyUrl may point (FUNDHUB_CALLBACK_ALLOW_CIDRS)."""
    router = APIRouter(prefix=MERCHANTS_PATH, tags=["merchants"])

    @router.post(
        "",
        summary="Register a sub-merchant (idempotent by merchantNo)",
        status_code=202,
        responses=answers(
            {
                202: (Merchant, "Accepted (or merchantNo seen before): PENDING_REVIEW"),
                200: (Merchant, "merchantNo seen before: the merchant, reviewed"),
            },
            400,
            401,
            403,
            (409, "Refused (E010_IDEMPOTENCY_CONFLICT): the merchantNo was used with another body"),
            413,
            503,
        ),
        openapi_extra=request_body(Registration),
    )
    @edge_route(body_limit=MAX_MATERIALS_BODY_BYTES)
    async def register_merchant(request: Request) -> Response:
        key = await authenticated(request, SCOPE_MERCHANTS_WRITE)
        registration = await _parsed(request, lambda raw: parse_registration(raw, callbacks))
        answered = await _admission(request).register(
            key.key_id, registration, request.state.correlation_id
        )
        return _acted(request, answered)

    @router.get(
        "",
        summary="Find a merchant by the merchantNo it was registered with",
        responses=answers(_MERCHANT_READ, 400, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def find_merchant(
        request: Request, merchantNo: str | None = Query(default=None)
    ) -> Response:
        key = await authenticated(request, SCOPE_MERCHANTS_READ)
        if not merchantNo or not MERCHANT_NO_PATTERN.fullmatch(merchantNo):
            raise FundhubError(
                ErrorCode.INVALID_PARAMETER,
                "merchantNo: required, 1 to 32 characters of A-Z a-z 0-9 . _ : -",
            )
        view = await _admission(request).find(key.key_id, merchantNo)
        if view is None:
            raise not_found(f"with merchantNo {merchantNo}")
        return _answer(request, view, underway=False)

    @router.get(
        "/{merchantId}",
        summary="A merchant: its state, material versions and settlement accounts",
        responses=answers(_MERCHANT_READ, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def get_merchant(request: Request, merchantId: str) -> Response:
        key = await authenticated(request, SCOPE_MERCHANTS_READ)
        view = await _admission(request).get(key.key_id, _merchant_id(request))
        if view is None:
            raise not_found(merchantId)
        return _answer(request, view, underway=False)

    @router.post(
        "/{merchantId}/materials",
        summary="Change the material: a new version, reviewed while the merchant trades on "
        "the version in force",
        status_code=202,
        responses=answers(_MERCHANT_ACTED, 400, 401, 403, 404, _STATE_CONFLICT, 413, 503),
        openapi_extra=request_body(Materials),
    )
    @edge_route(body_limit=MAX_MATERIALS_BODY_BYTES)
    async def change_materials(request: Request, merchantId: str) -> Response:
        key, merchant_id = await _writer(request)
        materials = await _parsed(request, parse_materials)
        answered = await _admission(request).change_materials(
            key.key_id, merchant_id, materials, request.state.correlation_id
        )
        return _acted(request, answered)

    @router.post(
        "/{merchantId}/settlement-account",
        summary="Bind a settlement account: the bank verifies it with a micro-deposit",
        status_code=202,
        responses=answers(_MERCHANT_ACTED, 400, 401, 403, 404, _STATE_CONFLICT, 413, 503),
        openapi_extra=request_body(SettlementAccount),
    )
    @edge_route(body_limit=MAX_ACCOUNT_BODY_BYTES)
    async def bind_settlement_account(request: Request, merchantId: str) -> Response:
        key, merchant_id = await _writer(request)
        account = await _parsed(request, parse_settlement_account)
        answered = await _admission(request).bind_account(
            key.key_id, merchant_id, account, request.state.correlation_id
        )
        return _acted(request, answered)

    @router.post(
        "/{merchantId}/settlement-account/verify",
        summary="Confirm the micro-deposit's amount (fen); five wrong amounts fail the binding",
        status_code=202,
        responses=answers(
            {202: (Merchant, "Accepted: the amount is being checked by the bank")},
            400,
            401,
            403,
            404,
            _STATE_CONFLICT,
            413,
            503,
        ),
        openapi_extra=request_body(Confirmation),
    )
    @edge_route(body_limit=MAX_AMOUNT_BODY_BYTES)
    async def verify_settlement_account(request: Request, merchantId: str) -> Response:
        key, merchant_id = await _writer(request)
        confirmation = await _parsed(request, parse_confirmation)
        answered = await _admission(request).confirm(
            key.key_id, merchant_id, confirmation.amount, request.state.correlation_id
        )
        return _acted(request, answered)

    @router.post(
        "/{merchantId}/close",
        summary="Close the merchant: refused while money or unsettled orders remain",
        status_code=202,
        responses=answers(
            {202: (Merchant, "Accepted: CLOSING until the depository confirms")},
            401,
            403,
            404,
            (
                409,
                "Refused: a balance bucket is not 0 (E050_MERCHANT_BALANCE_NOT_ZERO), an order "
                "is not settled (E051_MERCHANT_HAS_UNSETTLED_ORDERS), or the merchant is not "
                "ACTIVE or has a version under review (E052_MERCHANT_STATE_CONFLICT)",
            ),
            413,
            503,
        ),
    )
    @edge_route(body_limit=0)
    async def close_merchant(request: Request, merchantId: str) -> Response:
        key, merchant_id = await _writer(request)
        answered = await _admission(request).close(
            key.key_id, merchant_id, request.state.correlation_id
        )
        return _acted(request, answered)

    return router
