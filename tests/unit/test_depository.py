"""The depository's member protocol: the worker's ``HttpDepository`` against the simulated
depository itself (served by uvicorn on a free port), the answers' and notifications' shapes,
and the simulator's signed result notifications."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.receivers import posts_to, serving
from support.uvicorn_thread import ThreadedServer

from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.depository_members import (
    ACCOUNT_NAME_MISMATCH,
    MAX_TRIES,
    REVIEW_REFUSED,
    TOO_MANY_TRIES,
    DepositoryBehaviour,
)
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify
from fundhub.merchants.depository import (
    RESULT_METHOD,
    DepositoryAnswer,
    DepositoryRefused,
    DepositoryRequest,
    DepositoryUnavailable,
    InvalidMemberResult,
    existing_account,
    parse_answer,
    parse_member_result,
    snake_case,
)
from fundhub.merchants.depository_http import HttpDepository
from fundhub.merchants.states import RequestKind, ResultStatus

PRIVATE_PEM, PUBLIC_PEM = generate_rsa_keypair()
APP_ID = "20210911888888888888888888"


class Depository(ThreadedServer):
    def __init__(self) -> None:
        config = SimulatorConfig(
            gateway_url="http://127.0.0.1:9",
            private_key_pem=PRIVATE_PEM,
            app_id=APP_ID,
            retries=0,
        )
        super().__init__(
            create_app(config, depository=DepositoryBehaviour(review_delay_ms=(5, 20)))
        )


@pytest.fixture(scope="module")
def bank() -> Iterator[Depository]:
    server = Depository()
    yield server
    server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def request(
    kind: RequestKind, member: str, notify_url: str = "http://127.0.0.1:9/cb", **details: Any
) -> DepositoryRequest:
    return DepositoryRequest(f"mrq_{uuid.uuid4().hex}", kind, member, notify_url, details)


def opening(member: str, name: str = "Acme", **extra: Any) -> DepositoryRequest:
    return request(
        RequestKind.OPEN,
        member,
        version="1",
        materials={"name": name, "type": "ENTERPRISE"},
        **extra,
    )


async def settled(depository: HttpDepository, request_id: str) -> DepositoryAnswer:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = await depository.query(request_id)
        assert answer is not None
        if answer.final:
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError("never decided")


async def open_member(depository: HttpDepository, member: str) -> None:
    sent = opening(member)
    await depository.submit(sent)
    assert (await settled(depository, sent.request_id)).status is ResultStatus.SUCCESS


async def deposit(session: aiohttp.ClientSession, bank: Depository, member: str) -> dict[str, Any]:
    async with session.get(f"{bank.url}/depository/v1/simulator/micro-deposits/{member}") as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_a_member_is_opened_after_review_and_the_answer_repeats(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    sent = opening("mch_open")
    first = await depository.submit(sent)
    assert first.status is ResultStatus.PROCESSING and first.request_id == sent.request_id
    final = await settled(depository, sent.request_id)
    assert final.status is ResultStatus.SUCCESS and final.member_no
    again = await depository.submit(sent)  # the same request: the same answer, nothing new
    assert again == final


async def test_a_name_starting_with_reject_is_refused_with_a_reason(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    sent = opening("mch_rejected", name="REJECT me")
    await depository.submit(sent)
    final = await settled(depository, sent.request_id)
    assert (final.status, final.reason, final.member_no) == (
        ResultStatus.FAILED,
        REVIEW_REFUSED,
        None,
    )


def registering(member: str, name: str = "Old Shop") -> DepositoryRequest:
    return request(
        RequestKind.REGISTER,
        member,
        version="1",
        materials={"name": name, "type": "INDIVIDUAL"},
    )


async def test_an_existing_account_is_registered_at_once_and_the_answer_repeats(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    sent = registering("mch_existing")
    first = await depository.submit(sent)
    assert first.status is ResultStatus.SUCCESS and first.member_no  # no review to wait for
    assert await depository.submit(sent) == first
    assert await depository.query(sent.request_id) == first
    again = await depository.submit(registering("mch_existing"))  # another request, same member
    assert again.status is ResultStatus.SUCCESS and again.member_no == first.member_no


async def test_registering_an_existing_account_keeps_the_refusal_list(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    answer = await HttpDepository(session, bank.url).submit(registering("mch_x", "REJECT old"))
    assert (answer.status, answer.reason, answer.member_no) == (
        ResultStatus.FAILED,
        REVIEW_REFUSED,
        None,
    )


async def test_a_register_without_materials_is_refused_whole(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(DepositoryRefused) as caught:
        await HttpDepository(session, bank.url).submit(request(RequestKind.REGISTER, "mch_y"))
    assert caught.value.status_code == 400


async def test_an_id_reused_with_another_body_is_refused_and_an_unknown_one_not_found(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    sent = opening("mch_conflict")
    await depository.submit(sent)
    other = DepositoryRequest(
        sent.request_id, RequestKind.OPEN, "mch_other", sent.notify_url, sent.details
    )
    with pytest.raises(DepositoryRefused) as caught:
        await depository.submit(other)
    assert caught.value.status_code == 409
    assert await depository.query("mrq_never_sent") is None
    bad = DepositoryRequest("mrq_bad", RequestKind.BIND, "mch_x", sent.notify_url, {})
    with pytest.raises(DepositoryRefused) as refusal:
        await depository.submit(bad)
    assert refusal.value.status_code == 400 and "account" in refusal.value.reason


async def test_micro_deposit_right_and_wrong_amounts(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    await open_member(depository, "mch_deposit")
    account = {"account_no": "6222000011112222", "account_name": "Acme", "bank_name": "PAB"}
    bind = request(RequestKind.BIND, "mch_deposit", account=account)
    await depository.submit(bind)
    assert (await settled(depository, bind.request_id)).status is ResultStatus.SUCCESS
    sent = await deposit(session, bank, "mch_deposit")
    assert sent["bind_request_id"] == bind.request_id and 1 <= sent["amount"] <= 50
    wrong = request(
        RequestKind.CONFIRM,
        "mch_deposit",
        bind_request_id=bind.request_id,
        amount=str(sent["amount"] % 50 + 1),
    )
    answer = await depository.submit(wrong)  # a confirmation is answered at once
    assert answer.status is ResultStatus.FAILED and "does not match" in (answer.reason or "")
    right = request(
        RequestKind.CONFIRM,
        "mch_deposit",
        bind_request_id=bind.request_id,
        amount=str(sent["amount"]),
    )
    assert (await depository.submit(right)).status is ResultStatus.SUCCESS


async def test_after_five_wrong_amounts_the_deposit_is_void(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    await open_member(depository, "mch_void")
    account = {"account_no": "6222000011113333", "account_name": "Acme", "bank_name": "PAB"}
    bind = request(RequestKind.BIND, "mch_void", account=account)
    await depository.submit(bind)
    await settled(depository, bind.request_id)
    amount = (await deposit(session, bank, "mch_void"))["amount"]
    for _ in range(MAX_TRIES):
        wrong = request(
            RequestKind.CONFIRM,
            "mch_void",
            bind_request_id=bind.request_id,
            amount=str(amount % 50 + 1),
        )
        assert (await depository.submit(wrong)).status is ResultStatus.FAILED
    late = request(
        RequestKind.CONFIRM, "mch_void", bind_request_id=bind.request_id, amount=str(amount)
    )
    answer = await depository.submit(late)
    assert (answer.status, answer.reason) == (ResultStatus.FAILED, TOO_MANY_TRIES)


async def test_an_account_holder_name_starting_with_reject_fails_the_binding(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    depository = HttpDepository(session, bank.url)
    await open_member(depository, "mch_badname")
    account = {"account_no": "6222000011114444", "account_name": "REJECT Co", "bank_name": "PAB"}
    bind = request(RequestKind.BIND, "mch_badname", account=account)
    await depository.submit(bind)
    final = await settled(depository, bind.request_id)
    assert (final.status, final.reason) == (ResultStatus.FAILED, ACCOUNT_NAME_MISMATCH)


async def test_results_are_notified_signed_like_the_banks_other_notifications(
    bank: Depository, session: aiohttp.ClientSession
) -> None:
    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def take(http: web.Request) -> web.Response:
        await received.put(await http.json())
        return web.Response(text="success")

    async with serving(posts_to("/callbacks/bank", take)) as url:
        depository = HttpDepository(session, bank.url)
        sent = opening("mch_notified", notify_url=f"{url}/callbacks/bank")
        sent = DepositoryRequest(
            sent.request_id, sent.kind, sent.member_ext_id, f"{url}/callbacks/bank", sent.details
        )
        await depository.submit(sent)
        params = await asyncio.wait_for(received.get(), timeout=5)
    assert params["method"] == RESULT_METHOD and params["app_id"] == APP_ID
    assert rsa2_verify(params, params["sign"], load_public_key(PUBLIC_PEM))
    result = parse_member_result(json.loads(params["biz_content"]))
    assert (result.request_id, result.member_ext_id, result.kind, result.status) == (
        sent.request_id,
        "mch_notified",
        RequestKind.OPEN,
        ResultStatus.SUCCESS,
    )


async def test_transient_failures_are_retried_under_the_same_id_then_given_up(
    session: aiohttp.ClientSession,
) -> None:
    calls: list[bytes] = []

    async def flaky(http: web.Request) -> web.Response:
        calls.append(await http.read())
        if len(calls) < 3:
            return web.Response(status=503, text="busy")
        body = json.loads(calls[-1])
        return web.json_response({"request_id": body["request_id"], "status": "PROCESSING"})

    async with serving(posts_to("/depository/v1/requests", flaky)) as url:
        sleeps = Sleeps()
        depository = HttpDepository(session, url, retries=3, backoff_s=0.1, sleep=sleeps)
        sent = opening("mch_flaky")
        answer = await depository.submit(sent)
        assert answer.status is ResultStatus.PROCESSING
        assert len(calls) == 3 and len(set(calls)) == 1 and len(sleeps.waits) == 2
        calls.clear()
        stubborn = HttpDepository(session, url, retries=1, backoff_s=0.1, sleep=Sleeps())
        with pytest.raises(DepositoryUnavailable):
            await stubborn.submit(opening("mch_flaky2"))


async def test_a_404_that_is_not_the_banks_is_not_never_received(
    session: aiohttp.ClientSession,
) -> None:
    async with serving(web.Application()) as url:  # every path 404, without NOT_FOUND
        depository = HttpDepository(session, url, retries=1, backoff_s=0.0, sleep=Sleeps())
        with pytest.raises(DepositoryUnavailable):
            await depository.query("mrq_1")


def test_answers_are_checked() -> None:
    assert parse_answer({"request_id": "r", "status": "SUCCESS", "member_no": "M1"}, "r") == (
        DepositoryAnswer("r", ResultStatus.SUCCESS, None, "M1")
    )
    for body, problem in (
        ([], "not a JSON object"),
        ({"request_id": "s", "status": "SUCCESS"}, "another request_id"),
        ({"request_id": "r", "status": "DONE"}, "unknown status"),
        ({"request_id": "r", "status": "FAILED", "reason": 7}, "reason"),
    ):
        with pytest.raises(ValueError, match=problem):
            parse_answer(body, "r")


def test_result_notifications_are_checked() -> None:
    biz = {
        "request_id": "mrq_1",
        "member_ext_id": "mch_1",
        "kind": "OPEN",
        "status": "FAILED",
        "reason": "no",
        "member_no": "",
        "finished_time": "2026-01-02 03:04:05",
        "something_new": "ignored",
    }
    result = parse_member_result(biz)
    assert (result.status, result.reason, result.member_no) == (ResultStatus.FAILED, "no", None)
    for change, field in (
        ({"status": "PROCESSING"}, "status"),
        ({"kind": "OTHER"}, "kind"),
        ({"request_id": "a b"}, "request_id"),
        ({"finished_time": "2026-01-02"}, "finished_time"),
        ({"member_ext_id": None}, "member_ext_id"),
        ({"reason": 5}, "reason"),
    ):
        with pytest.raises(InvalidMemberResult, match=f"biz_content.{field}"):
            parse_member_result({**biz, **change})


def test_our_camel_case_reaches_the_bank_in_snake_case() -> None:
    assert snake_case({"legalPerson": {"idNumber": "1", "idType": "X"}, "list": [{"aB": 1}]}) == {
        "legal_person": {"id_number": "1", "id_type": "X"},
        "list": [{"a_b": 1}],
    }


def test_an_existing_account_is_registered_with_its_material_in_the_banks_spelling() -> None:
    sent = existing_account(
        "mrq_1", "mch_1", "http://127.0.0.1:9/cb", {"legalPerson": {"idNumber": "X"}}
    )
    assert sent.to_wire() == {
        "request_id": "mrq_1",
        "kind": "REGISTER",
        "member_ext_id": "mch_1",
        "notify_url": "http://127.0.0.1:9/cb",
        "version": "1",
        "materials": {"legal_person": {"id_number": "X"}},
    }
