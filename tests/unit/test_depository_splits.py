"""``HttpDepository`` against the bank's split desk: the simulator served by uvicorn.

The simulator is this protocol's bank, so this is the adapter's real counterpart. Results go
to a local threaded receiver that checks their RSA2 signatures, as the gateway does.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from support.receivers import ThreadedReceiver
from support.uvicorn_thread import ThreadedServer

from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import PayoutBehaviour
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify
from fundhub.settlement.depository import (
    SPLIT_RESULT_METHOD,
    SPLIT_RESULTS_METHOD,
    DepositoryRefused,
    DepositoryUnavailable,
    SplitInstruction,
    SplitReceiver,
    SplitReport,
    SplitStatus,
    parse_split_result,
    parse_split_results,
)
from fundhub.settlement.depository_http import HttpDepository


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


class Receiver(ThreadedReceiver):
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

    def wait_for(self, split_request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                for notice in self.notices:
                    biz: dict[str, Any] = json.loads(notice["biz_content"])
                    for result in biz.get("results", [biz]):
                        if result["split_request_id"] == split_request_id:
                            return notice
            time.sleep(0.02)
        raise AssertionError(f"no result for {split_request_id}")


@pytest.fixture(scope="module")
def receiver(keys: tuple[str, str]) -> Iterator[Receiver]:
    started = Receiver(keys[1])
    yield started
    started.close()


@pytest.fixture(scope="module")
def bank(keys: tuple[str, str]) -> Iterator[str]:
    config = SimulatorConfig(
        gateway_url="http://127.0.0.1:9", private_key_pem=keys[0], retries=0, timeout_s=2.0
    )
    server = ThreadedServer(create_app(config, PayoutBehaviour(seed=1)))
    httpx.post(
        f"{server.url}/depository/v1/split-desk/behaviour", json={"delayS": 0.05, "notify": True}
    )
    yield server.url
    server.stop()


@pytest.fixture
async def depository(bank: str) -> AsyncIterator[HttpDepository]:
    async with aiohttp.ClientSession() as session:
        yield HttpDepository(session, bank, timeout_s=2.0, retries=1, backoff_s=0.01)


def instruction(sid: str, url: str, *names: str) -> SplitInstruction:
    receivers = tuple(
        SplitReceiver(f"mch_{i}", name, 1000 * (i + 1)) for i, name in enumerate(names)
    )
    return SplitInstruction(sid, f"ORD-{sid}", "CNY", receivers, url)


async def test_a_split_is_taken_then_confirmed_by_a_signed_notification(
    depository: HttpDepository, receiver: Receiver
) -> None:
    split = instruction("STL-ok-1", receiver.url, "Acme Ltd", "Beta Co")
    answer = await depository.register_split(split)
    assert answer.status is SplitStatus.PROCESSING and answer.bank_split_id
    notice = await asyncio.to_thread(receiver.wait_for, "STL-ok-1")
    assert notice["method"] == SPLIT_RESULT_METHOD
    result = parse_split_result(json.loads(notice["biz_content"]))
    assert (result.status, result.amount, result.reason) == (SplitStatus.SUCCESS, 3000, None)
    assert result.bank_split_id == answer.bank_split_id
    queried = await depository.query_split("STL-ok-1")
    assert queried is not None and queried.status is SplitStatus.SUCCESS


async def test_splits_completing_together_are_reported_in_one_signed_notification(
    depository: HttpDepository, receiver: Receiver
) -> None:
    ids = [f"STL-batch-{n}" for n in range(5)]
    answers = await asyncio.gather(
        *(depository.register_split(instruction(sid, receiver.url, "Acme Ltd")) for sid in ids)
    )
    assert all(a.status is SplitStatus.PROCESSING for a in answers)
    notices = [await asyncio.to_thread(receiver.wait_for, sid) for sid in ids]
    batched = [n for n in notices if n["method"] == SPLIT_RESULTS_METHOD]
    assert batched, "five splits completing within the gather window share a notification"
    reported = {}
    for notice in {id(n): n for n in notices}.values():
        biz = json.loads(notice["biz_content"])
        if notice["method"] == SPLIT_RESULTS_METHOD:
            for result in parse_split_results(biz):
                reported[result.report.split_request_id] = result.report
        else:
            report = parse_split_result(biz)
            reported[report.split_request_id] = report
    assert set(reported) == set(ids)
    assert all(r.status is SplitStatus.SUCCESS and r.amount == 1000 for r in reported.values())


async def test_a_receiver_named_splitfail_makes_the_split_fail_with_a_reason(
    depository: HttpDepository, receiver: Receiver
) -> None:
    split = instruction("STL-fail-1", receiver.url, "Acme Ltd", "SPLITFAIL Trading")
    assert (await depository.register_split(split)).status is SplitStatus.PROCESSING
    notice = await asyncio.to_thread(receiver.wait_for, "STL-fail-1")
    result = parse_split_result(json.loads(notice["biz_content"]))
    assert result.status is SplitStatus.FAILED
    assert result.reason == "receiver mch_1 (SPLITFAIL Trading): the member may not receive splits"


async def test_registering_again_is_the_same_instruction_and_another_body_is_refused(
    depository: HttpDepository, receiver: Receiver
) -> None:
    split = instruction("STL-dup-1", receiver.url, "Acme Ltd")
    first = await depository.register_split(split)
    again = await depository.register_split(split)
    assert again.bank_split_id == first.bank_split_id
    other = instruction("STL-dup-1", receiver.url, "Acme Ltd", "Beta Co")
    with pytest.raises(DepositoryRefused) as caught:
        await depository.register_split(other)
    assert caught.value.status_code == 409


async def test_a_batch_registers_each_instruction_as_alone_and_refuses_only_its_bad_items(
    bank: str, depository: HttpDepository, receiver: Receiver
) -> None:
    known = instruction("STL-b-known", receiver.url, "Acme Ltd")
    first = await depository.register_split(known)
    conflicting = instruction("STL-b-known2", receiver.url, "Acme Ltd")
    await depository.register_split(conflicting)
    other_body = instruction("STL-b-known2", receiver.url, "Acme Ltd", "Beta Co")
    fresh = [instruction(f"STL-b-{n}", receiver.url, "Acme Ltd", "Beta Co") for n in range(3)]
    outcomes = await depository.register_splits([fresh[0], known, other_body, *fresh[1:]])
    assert len(outcomes) == 5
    new, again, refused, *others = outcomes
    assert isinstance(new, SplitReport) and new.split_request_id == "STL-b-0"
    assert isinstance(again, SplitReport) and again.bank_split_id == first.bank_split_id
    assert isinstance(refused, DepositoryRefused) and refused.status_code == 409
    assert [o.split_request_id for o in others if isinstance(o, SplitReport)] == [
        "STL-b-1",
        "STL-b-2",
    ]
    for sid in ("STL-b-0", "STL-b-1", "STL-b-2"):
        await asyncio.to_thread(receiver.wait_for, sid)
    async with httpx.AsyncClient() as client:
        whole = await client.post(f"{bank}/depository/v1/splits/batch", json={"splits": []})
    assert whole.status_code == 400


async def test_a_batch_the_bank_refuses_whole_is_refused_not_unavailable(
    bank: str, receiver: Receiver
) -> None:
    """A bank without the batch form (404 here, a path it does not serve) gives no verdict on
    any instruction: the caller registers each alone."""
    async with aiohttp.ClientSession() as session:
        elsewhere = HttpDepository(session, bank + "/nowhere", timeout_s=2.0, retries=0)
        with pytest.raises(DepositoryRefused) as caught:
            await elsewhere.register_splits([instruction("STL-w-1", receiver.url, "Acme Ltd")])
    assert caught.value.status_code == 404


async def test_a_malformed_instruction_is_refused_and_an_unknown_one_not_found(
    bank: str, depository: HttpDepository
) -> None:
    wire = instruction("STL-bad-1", "http://127.0.0.1:9/x", "Acme").to_wire()
    wire["amount"] = "999"  # not the receivers' sum
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{bank}/depository/v1/splits", json=wire)
    assert answer.status_code == 400 and "receivers' sum" in answer.json()["error"]
    assert await depository.query_split("STL-never-sent") is None


async def test_a_bank_that_cannot_be_reached_is_unavailable_not_refused() -> None:
    async with aiohttp.ClientSession() as session:
        nowhere = HttpDepository(
            session, "http://127.0.0.1:9", timeout_s=0.5, retries=1, backoff_s=0.01
        )
        with pytest.raises(DepositoryUnavailable):
            await nowhere.register_split(instruction("STL-x", "http://127.0.0.1:9/x", "A"))
