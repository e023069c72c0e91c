"""The simulator's payout API end to end in-process: requests, faults, callbacks, stats, flags.

Callbacks go to a local threaded receiver that checks their signatures; nothing else runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.orders import transfer_wire
from support.receivers import ThreadedReceiver

from fundhub.bank_simulator import main as cli
from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import FAIL_REASONS, PayoutBehaviour
from fundhub.common.clock import parse_bank_time
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify
from fundhub.payouts.bank import RESULTS_METHOD, TRANSFERS_PATH

FAST = {"callbackDelayMs": [5, 20], "returnDelayMs": [5, 20], "timeoutDelayMs": 100}


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


class Receiver(ThreadedReceiver):
    """Takes result notifications like the gateway would: verify, record, answer ``success``."""

    def __init__(self, public_pem: str) -> None:
        self.public = load_public_key(public_pem)
        self.notices: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__("/callbacks/bank")

    def answer(self, path: str, params: dict[str, Any]) -> str:
        assert rsa2_verify(params, params["sign"], self.public), "bad signature"
        with self.lock:
            self.notices.append(params)
        return "success"

    def results(self) -> list[dict[str, Any]]:
        """Every result received, batches flattened, in arrival order."""
        with self.lock:
            notices = list(self.notices)
        return [item for notice in notices for item in json.loads(notice["biz_content"])["results"]]


@pytest.fixture
def receiver(keys: tuple[str, str]) -> Iterator[Receiver]:
    started = Receiver(keys[1])
    yield started
    started.close()


@pytest.fixture
def client(keys: tuple[str, str]) -> Iterator[TestClient]:
    config = SimulatorConfig(
        gateway_url="http://127.0.0.1:9", private_key_pem=keys[0], retries=0, timeout_s=2.0
    )
    with TestClient(create_app(config, PayoutBehaviour(seed=1))) as test_client:
        yield test_client


def transfer(request_id: str, notify_url: str, amount: int = 1000) -> dict[str, str]:
    return transfer_wire(request_id, amount=str(amount), notify_url=notify_url)


def behave(client: TestClient, **rates: Any) -> dict[str, Any]:
    response = client.post("/bank/v1/behaviour", json={**FAST, **rates})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_processing_then_signed_callbacks_duplicates_and_returns(
    client: TestClient, receiver: Receiver
) -> None:
    behave(client, duplicateCallbackRate=1.0, lateReturnRate=1.0, seed=7)
    request_ids = [f"PAYAPI{n:04d}" for n in range(5)]
    for request_id in request_ids:
        answer = client.post(TRANSFERS_PATH, json=transfer(request_id, receiver.url))
        assert answer.status_code == 200
        assert answer.json()["status"] == "PROCESSING"
        assert answer.json()["bank_txn_id"].startswith("BTX")

    wait_for(lambda: len(receiver.results()) == 20)  # (SUCCESS + RETURNED) x 2 copies x 5
    assert {notice["method"] for notice in receiver.notices} == {RESULTS_METHOD}
    assert len(receiver.notices) <= 20  # batches: as many as results at most, usually fewer
    results = receiver.results()
    for request_id in request_ids:
        mine = [r for r in results if r["bank_request_id"] == request_id]
        assert sorted(r["status"] for r in mine) == ["RETURNED", "RETURNED", "SUCCESS", "SUCCESS"]
        success = next(r for r in mine if r["status"] == "SUCCESS")
        returned = next(r for r in mine if r["status"] == "RETURNED")
        assert success["reason"] == "" and returned["reason"].startswith("returned")
        assert parse_bank_time(returned["finished_time"]) >= parse_bank_time(
            success["finished_time"]
        )
        assert {r["amount"] for r in mine} == {"1000"}
        state = client.get(f"{TRANSFERS_PATH}/{request_id}").json()
        assert state["status"] == "RETURNED" and state["bank_txn_id"] == success["bank_txn_id"]

    wait_for(lambda: client.get("/bank/v1/stats").json()["pendingTasks"] == 0)
    stats = client.get("/bank/v1/stats").json()
    assert stats["transfers"] == 5
    assert stats["statuses"]["RETURNED"] == 5
    assert stats["amounts"]["CNY"]["RETURNED"] == 5000
    assert stats["callbacks"] == {
        "sent": 20,
        "delivered": 20,
        "failed": 0,
        "duplicated": 10,
        "withheld": 0,
    }
    assert stats["behaviour"]["seed"] == 7


def test_a_final_first_answer_and_its_failure_callback(
    client: TestClient, receiver: Receiver
) -> None:
    behave(client, failRate=1.0, processingRate=0.0)
    answer = client.post(TRANSFERS_PATH, json=transfer("PAYFAIL1", receiver.url)).json()
    assert answer["status"] == "FAILED" and answer["reason"] in FAIL_REASONS
    assert "finished_time" in answer
    wait_for(lambda: len(receiver.notices) == 1)
    (result,) = receiver.results()
    assert (result["status"], result["reason"]) == ("FAILED", answer["reason"])
    assert client.get("/bank/v1/stats").json()["finalFirstAnswers"] == 1


def test_never_answered_results_show_only_through_get(
    client: TestClient, receiver: Receiver
) -> None:
    behave(client, neverAnswerRate=1.0)
    client.post(TRANSFERS_PATH, json=transfer("PAYQUIET1", receiver.url))
    path = f"{TRANSFERS_PATH}/PAYQUIET1"
    wait_for(lambda: client.get(path).json()["status"] == "SUCCESS")
    wait_for(lambda: client.get("/bank/v1/stats").json()["pendingTasks"] == 0)
    assert receiver.notices == []
    assert client.get("/bank/v1/stats").json()["callbacks"]["withheld"] == 1


def test_requests_are_idempotent_and_refusals_say_why(
    client: TestClient, receiver: Receiver
) -> None:
    behave(client, neverAnswerRate=1.0)
    body = transfer("PAYIDEM1", receiver.url)
    first = client.post(TRANSFERS_PATH, json=body).json()
    again = client.post(TRANSFERS_PATH, content=json.dumps(body, indent=2)).json()
    assert again["bank_txn_id"] == first["bank_txn_id"]

    conflict = client.post(TRANSFERS_PATH, json={**body, "amount": "1001"})
    assert conflict.status_code == 409 and "PAYIDEM1" in conflict.json()["error"]
    bad = client.post(TRANSFERS_PATH, json={**body, "amount": "10.00"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("amount:")
    assert client.post(TRANSFERS_PATH, content=b"{not json").status_code == 400

    missing = client.get(f"{TRANSFERS_PATH}/PAYNEVER")
    assert missing.status_code == 404 and missing.json() == {"status": "NOT_FOUND"}

    stats = client.get("/bank/v1/stats").json()
    assert stats["transfers"] == 1
    assert (stats["submits"], stats["duplicateSubmits"]) == (2, 1)
    assert (stats["conflicts"], stats["refused"], stats["queriesNotFound"]) == (1, 2, 1)


def test_faulty_requests_still_make_the_transfer(client: TestClient, receiver: Receiver) -> None:
    behave(client, serverErrorRate=1.0, neverAnswerRate=1.0)
    failed = client.post(TRANSFERS_PATH, json=transfer("PAY5XX", receiver.url))
    assert failed.status_code == 500
    assert client.get(f"{TRANSFERS_PATH}/PAY5XX").status_code == 200

    behave(client, serverErrorRate=0.0, timeoutRate=1.0, timeoutDelayMs=150)
    started = time.monotonic()
    late = client.post(TRANSFERS_PATH, json=transfer("PAYSLOW", receiver.url))
    assert time.monotonic() - started >= 0.15
    assert late.status_code == 200 and late.json()["bank_request_id"] == "PAYSLOW"
    stats = client.get("/bank/v1/stats").json()
    assert (stats["serverErrors"], stats["timeouts"], stats["transfers"]) == (1, 1, 2)


def test_behaviour_updates_keep_what_they_leave_out(client: TestClient) -> None:
    first = behave(client, failRate=0.25, seed=99)
    assert first["failRate"] == 0.25 and first["seed"] == 99
    second = client.post("/bank/v1/behaviour", json={"duplicateCallbackRate": 0.5}).json()
    assert (second["failRate"], second["duplicateCallbackRate"], second["seed"]) == (0.25, 0.5, 99)
    assert client.get("/bank/v1/behaviour").json() == second

    for bad in ({"failRate": 2}, {"bogus": 1}, {"callbackDelayMs": [9, 1]}, [1, 2]):
        refused = client.post("/bank/v1/behaviour", json=bad)
        assert refused.status_code == 400, bad
    assert client.get("/bank/v1/behaviour").json() == second
    assert client.get("/readyz").json()["checks"]["payouts"] is True


def test_command_line_flags_set_the_behaviour() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "--payout-fail-rate",
            "0.1",
            "--payout-timeout-rate",
            "0.1",
            "--payout-duplicate-callback-rate",
            "0.05",
            "--payout-late-return-rate",
            "0.02",
            "--payout-callback-delay",
            "10,50",
            "--payout-timeout-delay",
            "8000",
            "--payout-seed",
            "5",
        ]
    )
    behaviour = cli._payout_behaviour(parser, args)
    assert behaviour == PayoutBehaviour(
        fail_rate=0.1,
        timeout_rate=0.1,
        duplicate_callback_rate=0.05,
        late_return_rate=0.02,
        callback_delay_ms=(10, 50),
        timeout_delay_ms=8000,
        seed=5,
    )
    defaults = cli._payout_behaviour(parser, parser.parse_args([]))
    assert defaults == PayoutBehaviour()

    with pytest.raises(SystemExit):
        cli._payout_behaviour(parser, parser.parse_args(["--payout-fail-rate", "3"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--payout-callback-delay", "soon"])
