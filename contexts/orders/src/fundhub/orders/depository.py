"""Registering an order with the depository bank (订单信息同步): the port, its types and the
protocol's names. No I/O.

The depository learns of each order before its money moves: who pays (the channel's money in
transit), who is paid (the platform), each receiver (a depository member: its merchant id and
account) with its amount, the platform's fee and the channel. ``order_id`` is the registration's
idempotency key: the same order registered again is answered as the first time, so a retry
after a lost answer never registers twice.

The protocol follows the bank's other APIs (``payouts.bank``): JSON with snake_case fields and
amounts as strings of fen. Its answer is the bank's signed envelope (``app_id``, ``method``,
``timestamp``, ``biz_content``, ``sign``: RSA2 as its notifications), verified against the bank
app's registered keys before anything in it is believed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fundhub.channels.events import Channel

REGISTER_PATH = "/bank/v1/depository/orders"
ANSWER_METHOD = "bkfunds.depository.order.register.response"
REGISTERED = "REGISTERED"
REFUSED = "REFUSED"
# What the order's payer is to the depository: the channel's money in transit.
PAYER_TYPE_CHANNEL = "CHANNEL"


class DepositoryUnavailable(Exception):
    """No usable answer (out of reach, 5xx, unsigned or forged): try again, same order id."""


class DepositoryRefused(Exception):
    """The depository refused the order for good; ``reason`` is its word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Receiver:
    merchant_id: str  # the depository member
    account_id: str
    amount: int


@dataclass(frozen=True)
class OrderRegistration:
    order_id: str
    platform: str  # the payee: the platform (tenant) the order is for
    channel: Channel
    amount: int
    currency: str
    description: str
    receivers: tuple[Receiver, ...]
    platform_fee: int
    fee_account: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "payer_type": PAYER_TYPE_CHANNEL,
            "payer": self.channel.value,
            "payee": self.platform,
            "channel": self.channel.value,
            "amount": str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "receivers": [
                {"member_id": r.merchant_id, "account_no": r.account_id, "amount": str(r.amount)}
                for r in self.receivers
            ],
            "platform_fee": str(self.platform_fee),
            "fee_account_no": self.fee_account,
        }


@dataclass(frozen=True)
class Registered:
    depository_ref: str  # the depository's number for the order


def read_answer(params: Mapping[str, Any], order_id: str) -> Registered:
    """The answer's business content, once its signature held: Registered, or
    DepositoryRefused; ValueError for an answer that says neither (or is about another order)."""
    biz_text = params.get("biz_content")
    if params.get("method") != ANSWER_METHOD or not isinstance(biz_text, str):
        raise ValueError("not a depository order answer")
    biz = json.loads(biz_text)
    if not isinstance(biz, dict) or biz.get("order_id") != order_id:
        raise ValueError("the answer is about another order")
    status = biz.get("status")
    if status == REGISTERED:
        ref = biz.get("depository_order_no")
        if not isinstance(ref, str) or not ref:
            raise ValueError("REGISTERED without depository_order_no")
        return Registered(ref)
    if status == REFUSED:
        raise DepositoryRefused(str(biz.get("reason") or "refused by the depository"))
    raise ValueError(f"unknown status {status!r}")


class DepositoryOrders(Protocol):
    async def register(self, registration: OrderRegistration) -> Registered: ...
