"""An order and a refund as the API, the callbacks and the events show them: built here once.

From rows of ``orders``, ``order_parts`` and ``order_refunds`` (``orders.store``). The
``settlement`` object is the settlement context's to fill (its state and time now; the
depository's confirmation and the bank's reason later): a reader that ignores fields it does
not know keeps working when it grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fundhub.common.clock import iso_utc
from fundhub.common.db import Row
from fundhub.orders.states import OrderState, RefundState


def order_body(order: Row, parts: Sequence[Row], refunds: Sequence[Row]) -> dict[str, Any]:
    """The order, its payment, its refunds (oldest first) and its settlement."""
    state = OrderState(order["state"])
    receivers = [p for p in parts if p["merchant_id"] is not None]
    moment: datetime = order["paid_at"] or order["updated_at"] or order["created_at"]
    refunded = sum(r["amount"] for r in refunds if r["state"] == RefundState.SUCCESS)
    body: dict[str, Any] = {
        "statusCode": 200,
        "bizCode": state.biz_code,
        "timestamp": iso_utc(moment),
        "orderNo": order["order_no"],
        "orderId": order["order_id"],
        "state": state.value,
        "amount": order["amount"],
        "currency": str(order["currency"]).strip(),
        "channel": order["channel"],
        "description": order["description"],
        "splits": [
            {"merchantId": p["merchant_id"], "amount": p["amount"], "accountId": p["account_id"]}
            for p in sorted(receivers, key=lambda p: int(p["position"]))
        ],
        "platformFee": order["platform_fee"],
        "payment": {
            "appId": order["app_id"],
            "params": dict(order["payment_params"] or {}),
            "transactionId": order["transaction_id"],
            "paidAt": _time(order["paid_at"]),
        },
        "refundedAmount": refunded,
        "refunds": [refund_item(r, parts) for r in refunds],
        "settlement": {"state": _settlement_state(order), "settledAt": _time(order["settled_at"])},
        "createdAt": iso_utc(order["created_at"]),
    }
    if order["notify_url"]:
        body["notifyUrl"] = order["notify_url"]
    if order["error_code"]:
        body["errorCode"] = order["error_code"]
        body["msg"] = order["message"] or ""
    return body


def refund_item(refund: Row, parts: Sequence[Row]) -> dict[str, Any]:
    """A refund as it appears in its order: each receiver's part and the platform fee's (the
    part without a merchant)."""
    allocation = list(refund["allocation"])
    by_position = {int(p["position"]): p for p in parts}
    splits = [
        {"merchantId": by_position[i]["merchant_id"], "amount": amount}
        for i, amount in enumerate(allocation)
        if by_position[i]["merchant_id"] is not None
    ]
    fee = sum(a for i, a in enumerate(allocation) if by_position[i]["merchant_id"] is None)
    item: dict[str, Any] = {
        "refundNo": refund["refund_no"],
        "refundId": refund["refund_id"],
        "state": refund["state"],
        "amount": refund["amount"],
        "splits": splits,
        "platformFee": fee,
        "takenFrom": refund["source_bucket"],
        "channelRefundId": refund["channel_refund_id"],
        "createdAt": iso_utc(refund["created_at"]),
        "finishedAt": _time(refund["finished_at"]),
    }
    if refund["reason"]:
        item["reason"] = refund["reason"]
    if refund["error_code"]:
        item["errorCode"] = refund["error_code"]
        item["msg"] = refund["message"] or ""
    if refund.get("debit_state") is not None:
        item["depositoryDebit"] = debit_item(refund)
    return item


def debit_item(refund: Row) -> dict[str, Any]:
    """A refund made after the order's split: the depository's debit of each member's share
    (``orders.refund_debits``), PENDING until sent, PROCESSING at the bank, then final."""
    debit: dict[str, Any] = {
        "state": refund["debit_state"],
        "finishedAt": _time(refund["debit_finished_at"]),
    }
    if refund["debit_error_code"]:
        debit["errorCode"] = refund["debit_error_code"]
    return debit


def refund_body(order: Row, refund: Row, parts: Sequence[Row]) -> dict[str, Any]:
    """``POST /v1/orders/{orderNo}/refunds``'s answer and a refund's callback: 202 while
    PROCESSING, 200 once final."""
    state = RefundState(refund["state"])
    moment: datetime = refund["finished_at"] or refund["created_at"]
    return {
        "statusCode": refund_http_status(state),
        "bizCode": state.biz_code,
        "timestamp": iso_utc(moment),
        "orderNo": order["order_no"],
        "orderId": order["order_id"],
        **refund_item(refund, parts),
    }


def refund_http_status(state: RefundState) -> int:
    return 202 if state is RefundState.PROCESSING else 200


def _settlement_state(order: Row) -> str:
    if order["settled_at"] is not None:
        return "SETTLED"
    return "SETTLING" if order["settling_id"] is not None else "UNSETTLED"


def _time(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment is not None else None
