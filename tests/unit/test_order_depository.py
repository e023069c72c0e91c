"""The depository's order registration: the simulator's side (signed answers, idempotent by
order id, refusals) and reading its answer (orders.depository); and the orders' messages."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fundhub.bank_simulator.depository_orders import DepositoryOrders, order_router
from fundhub.channels.events import Channel
from fundhub.common.consumer import PoisonMessage
from fundhub.common.envelope import Envelope
from fundhub.common.signing import (
    generate_rsa_keypair,
    load_private_key,
    load_public_key,
    rsa2_verify,
)
from fundhub.orders.depository import (
    REGISTER_PATH,
    DepositoryRefused,
    OrderRegistration,
    Receiver,
    read_answer,
)
from fundhub.orders.messages import decode_command, decode_event

PRIVATE, PUBLIC = generate_rsa_keypair()  # a TEST key pair, made per run
APP_ID = "20210911888888888888888888"


def registration(order_id: str = "ORD202611300000000001", **changes: Any) -> OrderRegistration:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "platform": "ak_x",
        "channel": Channel.WECHATPAY,
        "amount": 10_000,
        "currency": "CNY",
        "description": "two shirts",
        "receivers": (Receiver("mch_a", "acct-a", 6_000), Receiver("mch_b", "acct-b", 3_000)),
        "platform_fee": 1_000,
        "fee_account": "fee_ak_x_CNY",
    }
    fields.update(changes)
    return OrderRegistration(**fields)


@pytest.fixture
def bank() -> tuple[TestClient, DepositoryOrders]:
    held = DepositoryOrders()
    app = FastAPI()
    app.include_router(order_router(held, APP_ID, load_private_key(PRIVATE)))
    return TestClient(app), held


def register(
    client: TestClient, order: OrderRegistration | dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    body = order.to_wire() if isinstance(order, OrderRegistration) else order
    response = client.post(REGISTER_PATH, content=orjson.dumps(body))
    params: dict[str, Any] = response.json()
    assert rsa2_verify(params, params["sign"], load_public_key(PUBLIC))
    assert params["app_id"] == APP_ID
    return response.status_code, params


def test_an_order_is_registered_once_and_answered_alike_when_sent_again(
    bank: tuple[TestClient, DepositoryOrders],
) -> None:
    client, held = bank
    status, first = register(client, registration())
    assert status == 200
    registered = read_answer(first, "ORD202611300000000001")
    assert registered.depository_ref.startswith("DO")
    status, again = register(client, registration())
    assert status == 200 and read_answer(again, "ORD202611300000000001") == registered
    assert len(held.orders) == 1
    wire = json.loads(held.orders["ORD202611300000000001"][0])
    assert wire["receivers"][0] == {"member_id": "mch_a", "account_no": "acct-a", "amount": "6000"}
    assert wire["payer_type"] == "CHANNEL" and wire["payee"] == "ak_x"


def test_refusals_are_signed_answers_too(bank: tuple[TestClient, DepositoryOrders]) -> None:
    client, _ = bank
    register(client, registration())
    status, conflict = register(client, registration(amount=10_001, platform_fee=1_001))
    assert status == 409
    with pytest.raises(DepositoryRefused, match="other content"):
        read_answer(conflict, "ORD202611300000000001")
    status, rejected = register(client, registration("ORD2", description="REJECT me"))
    assert status == 200
    with pytest.raises(DepositoryRefused, match="REJECT"):
        read_answer(rejected, "ORD2")
    status, unbalanced = register(client, registration("ORD3", platform_fee=999))
    with pytest.raises(DepositoryRefused, match="do not add up"):
        read_answer(unbalanced, "ORD3")
    status, malformed = register(client, {"order_id": "ORD4"})
    assert status == 400
    with pytest.raises(ValueError):  # about no order of ours: not believed either way
        read_answer(malformed, "ORD4")


def test_an_answer_about_another_order_or_of_another_kind_is_not_read() -> None:
    with pytest.raises(ValueError, match="another order"):
        read_answer(
            {"method": "bkfunds.depository.order.register.response", "biz_content": json.dumps(
                {"order_id": "ORD9", "status": "REGISTERED", "depository_order_no": "DO1"}
            )},
            "ORD1",
        )  # fmt: skip
    with pytest.raises(ValueError, match="not a depository"):
        read_answer({"method": "bkfunds.acct.transfer.notify", "biz_content": "{}"}, "ORD1")


def test_messages_that_cannot_be_read_are_poison_and_other_commands_are_not_ours() -> None:
    with pytest.raises(PoisonMessage, match="unexpected message type"):
        decode_event(Envelope(type="payout.requested", correlation_id="c", data={}).to_bytes())
    with pytest.raises(PoisonMessage, match="not a channel event"):
        decode_event(Envelope(type="channel.notified", correlation_id="c", data={}).to_bytes())
    with pytest.raises(PoisonMessage):
        decode_event(b"not json")
    other = Envelope(type="order.settle-requested", correlation_id="c", data={"orderId": "O"})
    assert decode_command(other.to_bytes()) is None
    with pytest.raises(PoisonMessage, match="refundId"):
        decode_command(
            Envelope(
                type="order.refund-requested", correlation_id="c", data={"orderId": "O"}
            ).to_bytes()
        )
