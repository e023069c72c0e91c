"""``/v1/orders``: orders with split rules (created with their payment, read with their
payment, refunds and settlement) and their refunds.

Creation waits for the depository and the channel (``orders.admission``): the answer carries
the payment's parameters, or 503 E013 when either is out of reach, and then the same request
again completes the same order. Another tenant's order answers exactly as a missing one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_ORDERS_READ, SCOPE_ORDERS_WRITE
from fundhub.access.store import NonceReplayed
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import (
    authenticated,
    nonce_replayed,
    request_nonce,
)
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import JSONBody, signed
from fundhub.gateway.schemas import Order, Refund, answers, request_body
from fundhub.orders.admission import OrderDesk
from fundhub.orders.request import (
    ORDER_NO_PATTERN,
    InvalidOrder,
    OrderRequest,
    RefundRequest,
    parse_order_request,
    parse_refund_request,
)
from fundhub.orders.splits import SplitMismatch
from fundhub.orders.wire import order_body, refund_body
from fundhub.webhooks.destinations import CallbackAddresses

ORDERS_PATH = "/v1/orders"
# 50 receivers of about 60 bytes each, a description and the rest: 16 KiB leaves room for
# whitespace and escapes, and is all an authenticated caller can make us read.
MAX_ORDER_BODY_BYTES = 16 * 1024
_ORDER_NO_PARAM = {
    "name": "orderNo",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:-]+$"},
}


def _desk(request: Request) -> OrderDesk:
    desk: OrderDesk = request.app.state.orders
    return desk


def _order_no(request: Request) -> str:
    order_no: str = request.path_params["orderNo"]
    if not ORDER_NO_PATTERN.fullmatch(order_no):
        raise FundhubError(
            ErrorCode.INVALID_PARAMETER, "orderNo: 1 to 64 characters of A-Z a-z 0-9 . _ : -"
        )
    return order_no


def _not_found(order_no: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"order {order_no} not found")


def orders_router(callbacks: CallbackAddresses) -> APIRouter:
    """``callbacks``: where an order's notifyUrl may point (FUNDHUB_CALLBACK_ALLOW_CIDRS)."""
    router = APIRouter(prefix=ORDERS_PATH, tags=["orders"])

    @router.post(
        "",
        summary="Create an order with its split and its channel payment (idempotent by orderNo)",
        responses=answers(
            {200: (Order, "The order (new, or the one its orderNo made): its payment's params")},
            *(400, 401, 403, 409, 413, 422, 503),
        ),
        openapi_extra=request_body(OrderRequest),
    )
    @edge_route(body_limit=MAX_ORDER_BODY_BYTES)
    async def create_order(request: Request) -> Response:
        # The nonce is recorded in the order's own transaction: one round trip less.
        key = await authenticated(request, SCOPE_ORDERS_WRITE, take_nonce_now=False)
        try:
            order = parse_order_request(await request.body(), callbacks)
        except InvalidOrder as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        except SplitMismatch as exc:
            raise FundhubError(ErrorCode.SPLIT_MISMATCH, str(exc)) from None
        try:
            view, _ = await _desk(request).create(key.key_id, order, request_nonce(request))
        except NonceReplayed:
            raise nonce_replayed(key.key_id) from None
        body = order_body(view.order, view.parts, view.refunds)
        return signed(request, JSONBody(body))

    @router.get(
        "/{orderNo}",
        summary="An order: its split, payment, refunds and settlement",
        responses=answers({200: (Order, "The order")}, 400, 401, 403, 404, 503),
        openapi_extra={"parameters": [_ORDER_NO_PARAM]},
    )
    @edge_route(body_limit=0)
    async def get_order(request: Request) -> Response:
        key = await authenticated(request, SCOPE_ORDERS_READ)
        order_no = _order_no(request)
        view = await _desk(request).read(key.key_id, order_no)
        if view is None:
            raise _not_found(order_no)
        return signed(request, JSONBody(order_body(view.order, view.parts, view.refunds)))

    @router.post(
        "/{orderNo}/refunds",
        summary="Refund a paid order, in part or in full (idempotent by refundNo)",
        status_code=202,
        responses=answers(
            {
                202: (Refund, "Accepted (or refundNo seen before): the refund, PROCESSING"),
                200: (Refund, "refundNo seen before: the refund, final"),
            },
            *(400, 401, 403, 404, 409, 413, 422, 503),
        ),
        openapi_extra={"parameters": [_ORDER_NO_PARAM], **request_body(RefundRequest)},
    )
    @edge_route(body_limit=MAX_ORDER_BODY_BYTES)
    async def create_refund(request: Request) -> Response:
        key = await authenticated(request, SCOPE_ORDERS_WRITE)
        order_no = _order_no(request)
        try:
            refund = parse_refund_request(await request.body())
        except InvalidOrder as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        correlation_id: str = request.state.correlation_id
        view, _ = await _desk(request).refund(key.key_id, order_no, refund, correlation_id)
        body = refund_body(view.order, view.refund, view.parts)
        return signed(request, JSONBody(body, status_code=body["statusCode"]))

    return router
