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
    DepositoryRefused,
    DepositoryUnavailable,
    SplitInstruction,
    SplitReceiver,
    SplitStatus,
    parse_split_result,
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
                    if biz["split_request_id"] == split_request_id:
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
