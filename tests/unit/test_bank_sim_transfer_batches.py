"""The simulated bank's batch transfer requests: the book (``PayoutBank.submit_batch``, no I/O)
and the route (``POST /bank/v1/transfers/batch``, in-process, callbacks withheld)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from support.orders import transfer_wire as wire

from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import (
    Fault,
    PayoutBank,
    PayoutBehaviour,
    Refusal,
    Transfer,
    TransferRequestError,
    bank_txn_id,
    batch_fault,
    batch_from_wire,
)
from fundhub.common.signing import generate_rsa_keypair
from fundhub.payouts.bank import BATCH_PATH, MAX_BATCH, TRANSFERS_PATH, BankStatus

NOW = datetime(2025, 4, 30, 6, 0, 0, tzinfo=UTC)
# No callback is ever sent (neverAnswerRate), so nothing needs a receiver.
QUIET = {"neverAnswerRate": 1.0, "callbackDelayMs": [5, 10], "timeoutDelayMs": 100}


def ids(count: int, prefix: str = "PAYB") -> list[str]:
    return [f"{prefix}{n:010d}" for n in range(count)]


def batch(request_ids: list[str], **changes: Any) -> list[dict[str, Any]]:
    return [wire(request_id, **changes) for request_id in request_ids]


# --- the book -------------------------------------------------------------------------------


def test_a_batch_makes_each_transfer_once_like_single_submissions() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=3))
    request_ids = ids(5)
    first = bank.submit_batch(batch(request_ids), NOW)
    assert first.fault is None
    assert [t.bank_request_id for t in first.created] == request_ids
    assert first.items == first.created
    assert first.answer() == {"results": [t.answer() for t in first.created]}
    assert [t.bank_txn_id for t in first.created] == [bank_txn_id(i) for i in request_ids]

    again = bank.submit_batch(batch(request_ids), NOW + timedelta(seconds=1))
    assert again.created == [] and again.items == first.items
    order = first.created[0].order
    alone = bank.submit(order, NOW)  # the same transfer, sent alone
    assert not alone.created and alone.transfer is first.items[0]
    assert [t.submits for t in first.created] == [3, 2, 2, 2, 2]
    stats = bank.stats.to_json()
    assert (stats["transfers"], stats["submits"], stats["duplicateSubmits"]) == (5, 11, 6)
    assert stats["batches"] == 2


def test_the_same_order_twice_in_a_batch_is_one_transfer() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=3))
    submission = bank.submit_batch(batch(["PAYTWICE", "PAYTWICE"]), NOW)
    assert len(submission.created) == 1 and len(bank) == 1
    assert submission.items[0] is submission.items[1]


def test_bad_orders_of_a_batch_are_refused_alone() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=3))
    bank.submit_batch([wire("PAYTAKEN")], NOW)
    items = [
        wire("PAYGOOD"),
        wire("PAYBAD", amount="10.5"),
        "not an object",
        wire(5),
        wire("PAYTAKEN", amount="1001"),
    ]
    submission = bank.submit_batch(items, NOW)
    good, bad, not_object, bad_id, taken = submission.items
    assert isinstance(good, Transfer) and submission.created == [good]
    assert bad == Refusal("PAYBAD", 400, "amount: a positive integer string of fen")
    assert isinstance(not_object, Refusal) and not_object.bank_request_id is None
    assert not_object.code == 400 and not_object.error.startswith("body:")
    assert isinstance(bad_id, Refusal) and (bad_id.bank_request_id, bad_id.code) == (None, 400)
    assert isinstance(taken, Refusal) and (taken.bank_request_id, taken.code) == ("PAYTAKEN", 409)
    assert submission.answer()["results"][1] == {
        "bank_request_id": "PAYBAD",
        "status": "REFUSED",
        "code": 400,
        "error": "amount: a positive integer string of fen",
    }
    assert bank.get("PAYBAD") is None
    assert (bank.stats.refused, bank.stats.conflicts, len(bank)) == (3, 1, 2)


@pytest.mark.parametrize(
    ("rates", "fault"),
    [
        ({}, None),
        ({"timeout_rate": 1.0}, Fault.TIMEOUT),
        ({"server_error_rate": 1.0}, Fault.SERVER_ERROR),
    ],
)
def test_a_batch_draws_one_fault_for_the_request(
    rates: dict[str, float], fault: Fault | None
) -> None:
    bank = PayoutBank(PayoutBehaviour(seed=4, **rates))
    submission = bank.submit_batch(batch(ids(20)), NOW)
    assert submission.fault is fault
    assert len(submission.created) == 20, "made all the same"
    expected = (int(fault is Fault.TIMEOUT), int(fault is Fault.SERVER_ERROR))
    assert (bank.stats.timeouts, bank.stats.server_errors) == expected


def test_a_batch_fault_depends_on_the_seed_the_ids_and_the_attempt() -> None:
    behaviour = PayoutBehaviour(timeout_rate=0.3, server_error_rate=0.2, seed=9)
    batches = [ids(5, prefix=f"PAY{n:04d}-") for n in range(1_000)]
    faults = [batch_fault(behaviour, request_ids, 1) for request_ids in batches]
    assert 230 <= faults.count(Fault.TIMEOUT) <= 370
    assert 140 <= faults.count(Fault.SERVER_ERROR) <= 260
    assert faults == [batch_fault(behaviour, request_ids, 1) for request_ids in batches]
    assert faults != [batch_fault(behaviour, request_ids, 2) for request_ids in batches]
    other_seed = behaviour.model_copy(update={"seed": 10})
    assert faults != [batch_fault(other_seed, request_ids, 1) for request_ids in batches]

    # The bank numbers a batch's attempts by its transfers' submissions: a retry draws anew,
    # and another bank with the same seed, sent the same requests, draws the same.
    for _ in range(2):
        bank = PayoutBank(behaviour)
        for attempt in (1, 2, 3):
            drawn = bank.submit_batch(batch(batches[0]), NOW).fault
            assert drawn == batch_fault(behaviour, batches[0], attempt)


def test_final_first_answers_of_a_batch_count_when_answered() -> None:
    bank = PayoutBank(PayoutBehaviour(processing_rate=0.0, fail_rate=1.0, seed=4))
    submission = bank.submit_batch(batch(ids(3)), NOW)
    assert all(t.status is BankStatus.FAILED for t in submission.created)
    assert bank.stats.final_first_answers == 3
    bank.set_behaviour(PayoutBehaviour(processing_rate=0.0, server_error_rate=1.0, seed=4))
    bank.submit_batch(batch(ids(3, prefix="PAYC")), NOW)
    assert bank.stats.final_first_answers == 3, "a 500 answers nothing"


def test_a_batch_body_is_checked_as_a_whole() -> None:
    assert batch_from_wire({"transfers": [{}]}) == [{}]
    for bad in (
        [],
        {"transfers": {}},
        {"transfers": []},
        {"orders": [wire("PAY1")]},
        {"transfers": [wire("PAY1")] * (MAX_BATCH + 1)},
    ):
        with pytest.raises(TransferRequestError, match=r"^(body|transfers):"):
            batch_from_wire(bad)


# --- the route ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_pem() -> str:
    return generate_rsa_keypair()[0]


@pytest.fixture
def client(private_pem: str) -> Iterator[TestClient]:
    config = SimulatorConfig(
        gateway_url="http://127.0.0.1:9", private_key_pem=private_pem, retries=0, timeout_s=2.0
    )
    with TestClient(create_app(config, PayoutBehaviour(seed=1))) as test_client:
        yield test_client


def behave(client: TestClient, **rates: Any) -> None:
    response = client.post("/bank/v1/behaviour", json={**QUIET, **rates})
    assert response.status_code == 200, response.text


def stats(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/bank/v1/stats").json()
    return body


def test_the_route_answers_each_order_in_its_place(client: TestClient) -> None:
    behave(client)
    request_ids = ids(3)
    client.post(TRANSFERS_PATH, json=wire("PAYTAKEN"))
    items = [*batch(request_ids), wire("PAYBAD", currency="XYZ"), wire("PAYTAKEN", amount="5")]
    answer = client.post(BATCH_PATH, json={"transfers": items})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["bank_request_id"] for r in results] == [*request_ids, "PAYBAD", "PAYTAKEN"]
    assert [r["status"] for r in results[:3]] == ["PROCESSING"] * 3
    assert [r["bank_txn_id"] for r in results[:3]] == [bank_txn_id(i) for i in request_ids]
    assert [(r["status"], r["code"]) for r in results[3:]] == [("REFUSED", 400), ("REFUSED", 409)]
    assert results[3]["error"].startswith("currency:") and "PAYTAKEN" in results[4]["error"]
    for request_id in request_ids:  # each is a transfer like any other
        state = client.get(f"{TRANSFERS_PATH}/{request_id}").json()
        assert state["bank_txn_id"] == bank_txn_id(request_id)
    assert client.get(f"{TRANSFERS_PATH}/PAYBAD").status_code == 404

    again = client.post(BATCH_PATH, content=orjson.dumps({"transfers": items}))
    repeated = again.json()["results"]
    assert [r.get("bank_txn_id") for r in repeated] == [r.get("bank_txn_id") for r in results]
    assert repeated[3:] == results[3:]
    counted = stats(client)
    assert (counted["transfers"], counted["batches"]) == (4, 2)
    assert (counted["submits"], counted["duplicateSubmits"]) == (7, 3)
    assert (counted["refused"], counted["conflicts"]) == (2, 2)


def test_a_malformed_batch_is_refused_whole(client: TestClient) -> None:
    behave(client)
    for body in (
        b"{not json",
        b"[]",
        orjson.dumps({"transfers": []}),
        orjson.dumps({"transfers": batch(ids(MAX_BATCH + 1))}),
        b"{" + b" " * (MAX_BATCH * 4 * 1024) + b"}",
    ):
        refused = client.post(BATCH_PATH, content=body)
        assert refused.status_code == 400, body[:40]
        assert refused.json()["status"] == "REFUSED"
    counted = stats(client)
    assert (counted["transfers"], counted["batches"], counted["refused"]) == (0, 0, 5)


def test_a_faulty_batch_request_still_makes_every_transfer(client: TestClient) -> None:
    behave(client, serverErrorRate=1.0)
    failed = client.post(BATCH_PATH, json={"transfers": batch(ids(4))})
    assert failed.status_code == 500
    assert all(
        client.get(f"{TRANSFERS_PATH}/{request_id}").status_code == 200 for request_id in ids(4)
    )

    behave(client, serverErrorRate=0.0, timeoutRate=1.0, timeoutDelayMs=150)
    started = time.monotonic()
    late = client.post(BATCH_PATH, json={"transfers": batch(ids(4, prefix="PAYSLOW"))})
    assert time.monotonic() - started >= 0.15
    assert late.status_code == 200 and len(late.json()["results"]) == 4
    counted = stats(client)
    assert (counted["serverErrors"], counted["timeouts"]) == (1, 1), "one per request"
    assert (counted["transfers"], counted["batches"]) == (8, 2)

    behave(client, timeoutRate=0.0)
    assert client.post(BATCH_PATH, json={"transfers": batch(ids(4))}).status_code == 200
    assert (stats(client)["timeouts"], stats(client)["serverErrors"]) == (1, 1)
