"""The depository's order registration (订单信息同步), as ``orders.depository_http`` calls it.

``POST /bank/v1/depository/orders`` takes an order (``orders.depository``'s wire: snake_case,
amounts as strings of fen) and answers the bank's signed envelope (RSA2 with the simulator's
key, as its notifications), whose ``biz_content`` says ``REGISTERED`` with the depository's
number, or ``REFUSED`` with a reason: the receivers and the fee not adding up to the amount,
or (so anyone can see that path) a description starting with ``REJECT``. The same order again
is answered as the first time; the same order id with other content is refused (409).
``GET /bank/v1/depository/orders/{order_id}`` tells what the depository holds.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from fastapi import APIRouter, Request, Response, status

from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.signing import rsa2_sign
from fundhub.orders.depository import ANSWER_METHOD, REFUSED, REGISTER_PATH, REGISTERED

MAX_BODY = 32 * 1024
REJECT_PREFIX = "REJECT"
_AMOUNT_DIGITS = 16


@dataclass
class DepositoryOrders:
    """What the depository holds: each registered order's content and its answer."""

    orders: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    refused: int = 0

    def register(self, order: dict[str, Any]) -> tuple[int, dict[str, str]]:
        """The answer's HTTP status and biz_content for ``order`` (already shaped)."""
        order_id = str(order["order_id"])
        content = orjson.dumps(order, option=orjson.OPT_SORT_KEYS)
        known = self.orders.get(order_id)
        if known is not None:
            if known[0] != content:
                self.refused += 1
                return status.HTTP_409_CONFLICT, _refused(
                    order_id, "order_id registered before with other content"
                )
            return status.HTTP_200_OK, known[1]
        reason = _refusal(order)
        if reason is not None:
            self.refused += 1
            biz = _refused(order_id, reason)
        else:
            biz = {
                "order_id": order_id,
                "status": REGISTERED,
                "depository_order_no": f"DO{next(self.numbers):012d}",
            }
        self.orders[order_id] = (content, biz)
        return status.HTTP_200_OK, biz


def _refused(order_id: str, reason: str) -> dict[str, str]:
    return {"order_id": order_id, "status": REFUSED, "reason": reason}


def _amount(value: Any) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > _AMOUNT_DIGITS:
        raise ValueError("amounts are strings of fen")
    return int(value)


def _shape(body: Any) -> dict[str, Any]:
    """The order's fields the depository needs, or ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body: not a JSON object")
    for name in ("order_id", "payer", "payee", "channel", "currency", "description"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ValueError(f"{name}: required string")
    receivers = body.get("receivers")
    if not isinstance(receivers, list) or not 1 <= len(receivers) <= 50:
        raise ValueError("receivers: 1 to 50")
    for item in receivers:
        if not isinstance(item, dict) or not isinstance(item.get("member_id"), str):
            raise ValueError("receivers: each with member_id, account_no and amount")
        _amount(item.get("amount"))
    _amount(body.get("amount"))
    _amount(body.get("platform_fee"))
    return body


def _refusal(order: dict[str, Any]) -> str | None:
    if str(order["description"]).startswith(REJECT_PREFIX):
        return "the depository refused the order (its description starts with REJECT)"
    shares = sum(_amount(r["amount"]) for r in order["receivers"])
    if shares + _amount(order["platform_fee"]) != _amount(order["amount"]):
        return "receivers and platform_fee do not add up to amount"
    return None


def signed_answer(biz: dict[str, str], app_id: str, key: RSAPrivateKey) -> dict[str, str]:
    """The bank's envelope around ``biz``, signed as its notifications are."""
    params = {
        "app_id": app_id,
        "method": ANSWER_METHOD,
        "format": "json",
        "charset": "UTF-8",
        "sign_type": "RSA2",
        "timestamp": format_bank_time(utcnow()),
        "version": "1.0",
        "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
    }
    params["sign"] = rsa2_sign(params, key)
    return params


def order_router(held: DepositoryOrders, app_id: str, key: RSAPrivateKey) -> APIRouter:
    router = APIRouter(tags=["bank: depository"])

    def answer(status_code: int, biz: dict[str, str]) -> Response:
        body = orjson.dumps(signed_answer(biz, app_id, key))
        return Response(body, status_code=status_code, media_type="application/json")

    @router.post(REGISTER_PATH, summary="Register an order (idempotent by order_id)")
    async def register(request: Request) -> Response:
        raw = await request.body()
        try:
            if len(raw) > MAX_BODY:
                raise ValueError(f"body: over {MAX_BODY} bytes")
            try:
                order = _shape(orjson.loads(raw))
            except orjson.JSONDecodeError:
                raise ValueError("body: not JSON") from None
        except ValueError as exc:
            held.refused += 1
            order_id = ""
            return answer(status.HTTP_400_BAD_REQUEST, _refused(order_id, str(exc)))
        status_code, biz = held.register(order)
        return answer(status_code, biz)

    @router.get(REGISTER_PATH + "/{order_id}", summary="What the depository holds of an order")
    async def registered(order_id: str) -> Response:
        known = held.orders.get(order_id)
        if known is None:
            return answer(status.HTTP_404_NOT_FOUND, _refused(order_id, "NOT_FOUND"))
        return answer(status.HTTP_200_OK, known[1])

    return router
