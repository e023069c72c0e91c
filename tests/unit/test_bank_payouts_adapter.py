"""``HttpBankAdapter`` against the bank itself: the simulator served by uvicorn on a free port.

The simulator is the bank of this protocol, so this is the adapter's real counterpart. Faults
are made to order: the simulator decides them per request from its seed, and the test picks
ids whose first request fails and whose retry does not.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from support.orders import payout_order, transfer_wire
from support.receivers import posts_to, serving
from support.uvicorn_thread import ThreadedServer

from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import (
    Fault,
    PayoutBehaviour,
    attempt_fault,
    bank_txn_id,
    batch_fault,
)
from fundhub.common.signing import generate_rsa_keypair
from fundhub.payouts.bank import (
    BATCH_PATH,
    MAX_BATCH,
    BankAnswer,
    BankRequestRefused,
    BankStatus,
    BankUnavailable,
    PayoutOrder,
    parse_answer,
    parse_batch_answer,
    payee_invalid,
)
from fundhub.payouts.bank_http import HttpBankAdapter

SEED = 20250430
QUIET = {"neverAnswerRate": 1.0, "callbackDelayMs": [5, 10], "seed": SEED}


class BankServer(ThreadedServer):
    """The simulator app under uvicorn in a thread of its own, on a pre-bound free port."""

    def __init__(self) -> None:
        private_pem, _ = generate_rsa_keypair()
        config = SimulatorConfig(
            gateway_url="http://127.0.0.1:9", private_key_pem=private_pem, retries=0
        )
        app = create_app(config, PayoutBehaviour(seed=SEED))
        super().__init__(app)


@pytest.fixture(scope="module")
def bank() -> Iterator[BankServer]:
    server = BankServer()
    yield server
    server.stop()


class Sleeps:
    """Records the backoffs instead of waiting them out."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def behave(session: aiohttp.ClientSession, bank: BankServer, **rates: Any) -> PayoutBehaviour:
    """Every rate from its default but those given (an update keeps what it leaves out);
    returns the behaviour set, to find ids that meet given faults."""
    body = {**PayoutBehaviour().to_json(), **QUIET, **rates}
    async with session.post(f"{bank.url}/bank/v1/behaviour", json=body) as answer:
        assert answer.status == 200, await answer.text()
    return PayoutBehaviour.model_validate({**QUIET, **rates})


async def stats(session: aiohttp.ClientSession, bank: BankServer) -> dict[str, Any]:
    async with session.get(f"{bank.url}/bank/v1/stats") as answer:
        body: dict[str, Any] = await answer.json()
        return body


_counter = iter(range(1_000_000))


def new_id(prefix: str = "PAYT") -> str:
    return f"{prefix}{random.randrange(10**9):09d}{next(_counter):06d}"


def order(request_id: str | None = None, **changes: Any) -> PayoutOrder:
    return payout_order(request_id or new_id(), **{"purpose": "货款", **changes})


def id_with_faults(behaviour: PayoutBehaviour, *faults: Fault | None) -> str:
    """An id whose first requests meet exactly these faults, in order."""
    for _ in range(10_000):
        candidate = new_id("PAYF")
        drawn = [attempt_fault(behaviour, candidate, n + 1) for n in range(len(faults))]
        if drawn == list(faults):
            return candidate
    raise AssertionError("no such id in 10,000 tries")


def ids_with_batch_faults(
    behaviour: PayoutBehaviour, size: int, *faults: Fault | None
) -> list[str]:
    """Ids whose batch (these ids, in this order) meets exactly these faults, in order."""
    for _ in range(10_000):
        candidates = [new_id("PAYB") for _ in range(size)]
        drawn = [batch_fault(behaviour, candidates, n + 1) for n in range(len(faults))]
        if drawn == list(faults):
            return candidates
    raise AssertionError("no such batch in 10,000 tries")


def adapter(
    session: aiohttp.ClientSession, url: str, timeout_s: float = 2.0, retries: int = 3
) -> tuple[HttpBankAdapter, Sleeps]:
    sleeps = Sleeps()
    return HttpBankAdapter(session, url, timeout_s, retries, backoff_s=0.1, sleep=sleeps), sleeps


async def test_submit_query_and_resubmit(bank: BankServer, session: aiohttp.ClientSession) -> None:
    await behave(session, bank)
    client, sleeps = adapter(session, bank.url + "/")
    payout = order()
    answer = await client.submit(payout)
    assert answer.status is BankStatus.PROCESSING and answer.bank_txn_id
    assert not answer.final

    again = await client.submit(payout)
    assert again.bank_txn_id == answer.bank_txn_id, "the bank deduplicates by bank_request_id"
    queried = await client.query(payout.bank_request_id)
    assert queried is not None and queried.bank_txn_id == answer.bank_txn_id
    assert await client.query(new_id("PAYNONE")) is None
    assert sleeps.waits == []


async def test_the_result_shows_through_query(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank, failRate=1.0)
    client, _ = adapter(session, bank.url)
    payout = order()
    await client.submit(payout)
    deadline = time.monotonic() + 10
    result: BankAnswer | None = None
    while time.monotonic() < deadline:
        result = await client.query(payout.bank_request_id)
        if result is not None and result.final:
            break
    assert result is not None and result.status is BankStatus.FAILED
    assert result.reason


async def test_a_timed_out_submit_is_retried_with_the_same_id(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    behaviour = await behave(session, bank, timeoutRate=0.5, timeoutDelayMs=1_000)
    request_id = id_with_faults(behaviour, Fault.TIMEOUT, None)
    before = await stats(session, bank)

    client, sleeps = adapter(session, bank.url, timeout_s=0.3)
    answer = await client.submit(order(request_id))
    assert answer.status in {BankStatus.PROCESSING, BankStatus.SUCCESS}
    assert len(sleeps.waits) == 1 and 0 <= sleeps.waits[0] <= 0.1

    after = await stats(session, bank)
    assert after["transfers"] - before["transfers"] == 1, "one transfer, not two"
    assert after["duplicateSubmits"] - before["duplicateSubmits"] == 1
    assert after["timeouts"] - before["timeouts"] == 1


async def test_5xx_is_retried_and_a_late_success_is_kept(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    behaviour = await behave(session, bank, serverErrorRate=0.5)
    request_id = id_with_faults(behaviour, Fault.SERVER_ERROR, Fault.SERVER_ERROR, None)
    client, sleeps = adapter(session, bank.url)
    answer = await client.submit(order(request_id))
    assert answer.bank_txn_id
    assert len(sleeps.waits) == 2
    assert all(0 <= wait <= 0.2 for wait in sleeps.waits)


async def test_no_answer_at_all_is_bank_unavailable_and_never_a_failure(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank, timeoutRate=1.0, timeoutDelayMs=1_000)
    client, sleeps = adapter(session, bank.url, timeout_s=0.2, retries=2)
    payout = order()
    with pytest.raises(BankUnavailable, match="3 attempts"):
        await client.submit(payout)
    assert len(sleeps.waits) == 2
    found = await client.query(payout.bank_request_id)  # queries are never held back
    assert found is not None, "the transfer was made although no answer came"

    await behave(session, bank, serverErrorRate=1.0)
    with pytest.raises(BankUnavailable, match="HTTP 500"):
        await client.submit(order())


async def test_refusals_are_not_retried(bank: BankServer, session: aiohttp.ClientSession) -> None:
    await behave(session, bank)
    client, sleeps = adapter(session, bank.url)
    with pytest.raises(BankRequestRefused) as bad:
        await client.submit(order(payee_account_no="6217-0000"))
    assert bad.value.status_code == 400 and bad.value.reason.startswith("payee_account_no:")

    payout = order()
    await client.submit(payout)
    with pytest.raises(BankRequestRefused) as conflict:
        await client.submit(order(payout.bank_request_id, amount=2000))
    assert conflict.value.status_code == 409
    assert sleeps.waits == []


async def test_an_unreachable_bank_is_unavailable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    client, sleeps = adapter(session, url, retries=3)
    with pytest.raises(BankUnavailable, match="transport error"):
        await client.submit(order())
    with pytest.raises(BankUnavailable):
        await client.query("PAY1")
    assert len(sleeps.waits) == 6


async def test_a_404_from_the_wrong_place_is_not_never_received(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    client, _ = adapter(session, bank.url + "/not-the-bank", retries=1)
    with pytest.raises(BankUnavailable, match="NOT_FOUND"):
        await client.query("PAY1")
    with pytest.raises(BankRequestRefused) as refused:
        await client.submit(order())
    assert refused.value.status_code == 404


# --- batches ---------------------------------------------------------------------------------


async def test_a_batch_is_answered_per_order_in_order(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank)
    client, sleeps = adapter(session, bank.url)
    orders = [order() for _ in range(5)]
    before = await stats(session, bank)
    answers = await client.submit_many(orders)
    assert [a.bank_txn_id for a in answers if isinstance(a, BankAnswer)] == [
        bank_txn_id(o.bank_request_id) for o in orders
    ]
    assert all(isinstance(a, BankAnswer) and a.status is BankStatus.PROCESSING for a in answers)
    after = await stats(session, bank)
    assert after["batches"] - before["batches"] == 1
    assert after["transfers"] - before["transfers"] == 5

    again = await client.submit_many(orders)  # the bank dedupes each order of a batch
    assert [a.bank_txn_id for a in again if isinstance(a, BankAnswer)] == [
        a.bank_txn_id for a in answers if isinstance(a, BankAnswer)
    ]
    for payout in orders:  # and each stays what it is when asked alone
        queried = await client.query(payout.bank_request_id)
        assert queried is not None and queried.bank_txn_id == bank_txn_id(payout.bank_request_id)
    final = await stats(session, bank)
    assert final["transfers"] - before["transfers"] == 5
    assert final["duplicateSubmits"] - after["duplicateSubmits"] == 5
    assert await client.submit_many([]) == []
    assert sleeps.waits == []


async def test_a_bad_order_is_refused_alone(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank)
    client, sleeps = adapter(session, bank.url)
    taken = order()
    await client.submit(taken)
    good, bad, conflicting = (
        order(),
        order(payee_account_no="6217-0000"),
        order(taken.bank_request_id, amount=2000),
    )
    first, second, third = await client.submit_many([good, bad, conflicting])
    assert isinstance(first, BankAnswer) and first.bank_txn_id == bank_txn_id(good.bank_request_id)
    assert isinstance(second, BankRequestRefused) and second.status_code == 400
    assert second.reason.startswith("payee_account_no:")
    assert isinstance(third, BankRequestRefused) and third.status_code == 409
    assert await client.query(bad.bank_request_id) is None, "the bank made nothing of it"
    assert sleeps.waits == []


async def test_a_timed_out_batch_is_retried_with_the_same_ids(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    behaviour = await behave(session, bank, timeoutRate=0.5, timeoutDelayMs=1_000)
    request_ids = ids_with_batch_faults(behaviour, 4, Fault.TIMEOUT, None)
    before = await stats(session, bank)

    client, sleeps = adapter(session, bank.url, timeout_s=0.3)
    answers = await client.submit_many([order(request_id) for request_id in request_ids])
    assert [a.bank_txn_id for a in answers if isinstance(a, BankAnswer)] == [
        bank_txn_id(request_id) for request_id in request_ids
    ]
    assert len(sleeps.waits) == 1

    after = await stats(session, bank)
    assert after["transfers"] - before["transfers"] == 4, "each made once, not twice"
    assert after["duplicateSubmits"] - before["duplicateSubmits"] == 4
    assert after["batches"] - before["batches"] == 2
    assert after["timeouts"] - before["timeouts"] == 1, "one fault for the request, not per order"


async def test_a_5xx_batch_is_retried_until_it_is_answered(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    behaviour = await behave(session, bank, serverErrorRate=0.5)
    request_ids = ids_with_batch_faults(behaviour, 3, Fault.SERVER_ERROR, Fault.SERVER_ERROR, None)
    before = await stats(session, bank)
    client, sleeps = adapter(session, bank.url)
    answers = await client.submit_many([order(request_id) for request_id in request_ids])
    assert all(isinstance(a, BankAnswer) for a in answers) and len(answers) == 3
    assert len(sleeps.waits) == 2
    after = await stats(session, bank)
    assert after["serverErrors"] - before["serverErrors"] == 2
    assert after["transfers"] - before["transfers"] == 3


async def test_a_batch_without_an_answer_is_bank_unavailable(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank, timeoutRate=1.0, timeoutDelayMs=1_000)
    client, sleeps = adapter(session, bank.url, timeout_s=0.2, retries=2)
    orders = [order() for _ in range(3)]
    with pytest.raises(BankUnavailable, match="3 attempts"):
        await client.submit_many(orders)
    assert len(sleeps.waits) == 2
    for payout in orders:
        assert await client.query(payout.bank_request_id) is not None, "made all the same"

    await behave(session, bank, serverErrorRate=1.0)
    with pytest.raises(BankUnavailable, match="HTTP 500"):
        await client.submit_many([order()])


async def test_more_than_a_batch_goes_in_several_requests(
    bank: BankServer, session: aiohttp.ClientSession
) -> None:
    await behave(session, bank)
    client, _ = adapter(session, bank.url)
    orders = [order() for _ in range(2 * MAX_BATCH + 1)]
    before = await stats(session, bank)
    answers = await client.submit_many(orders)
    assert [a.bank_txn_id for a in answers if isinstance(a, BankAnswer)] == [
        bank_txn_id(o.bank_request_id) for o in orders
    ]
    after = await stats(session, bank)
    assert after["batches"] - before["batches"] == 3
    assert after["transfers"] - before["transfers"] == 2 * MAX_BATCH + 1

    small = HttpBankAdapter(session, bank.url, max_batch=2)
    assert len(await small.submit_many([order() for _ in range(5)])) == 5
    assert (await stats(session, bank))["batches"] - after["batches"] == 3
    with pytest.raises(ValueError):
        HttpBankAdapter(session, bank.url, max_batch=MAX_BATCH + 1)


Answer = Callable[[list[str]], tuple[int, Any]]


@asynccontextmanager
async def scripted_bank(*script: Answer) -> AsyncIterator[tuple[str, list[list[str]]]]:
    """A stand-in bank answering batch requests from a script (answers the simulator never
    gives); yields its URL and the ids of every request it got."""
    seen: list[list[str]] = []
    answers = list(script)

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        request_ids = [transfer["bank_request_id"] for transfer in body["transfers"]]
        seen.append(request_ids)
        status, answer = answers.pop(0)(request_ids)
        return web.Response(body=orjson.dumps(answer), status=status)

    async with serving(posts_to(BATCH_PATH, handle)) as url:
        yield url, seen


def processing(request_ids: list[str]) -> tuple[int, Any]:
    return 200, {
        "results": [
            {"bank_request_id": i, "bank_txn_id": "BTX" + i, "status": "PROCESSING"}
            for i in request_ids
        ]
    }


async def test_an_answer_that_does_not_match_the_ids_is_retried(
    session: aiohttp.ClientSession,
) -> None:
    def reordered(request_ids: list[str]) -> tuple[int, Any]:
        return processing(request_ids[::-1])

    def one_short(request_ids: list[str]) -> tuple[int, Any]:
        return processing(request_ids[:-1])

    async with scripted_bank(reordered, one_short, processing) as (url, seen):
        client, sleeps = adapter(session, url)
        orders = [order() for _ in range(3)]
        answers = await client.submit_many(orders)
    assert answers == [BankAnswer(BankStatus.PROCESSING, "BTX" + o.bank_request_id) for o in orders]
    assert seen == [[o.bank_request_id for o in orders]] * 3, "the same ids, in the same order"
    assert len(sleeps.waits) == 2


async def test_a_batch_refused_whole_is_not_retried(session: aiohttp.ClientSession) -> None:
    def malformed(_: list[str]) -> tuple[int, Any]:
        return 400, {"status": "REFUSED", "error": "transfers: a list of 1 to 200"}

    async with scripted_bank(malformed) as (url, seen):
        client, sleeps = adapter(session, url)
        with pytest.raises(BankRequestRefused) as refused:
            await client.submit_many([order(), order()])
    assert refused.value.status_code == 400 and refused.value.reason.startswith("transfers:")
    assert len(seen) == 1 and sleeps.waits == []


# --- the pure parts -------------------------------------------------------------------------


def test_an_adapter_refuses_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError):
        HttpBankAdapter(None, "http://bank.invalid", timeout_s=0)  # type: ignore[arg-type]


def test_an_order_checks_itself_and_goes_out_as_strings() -> None:
    payout = order("PAY202504300000000001", purpose=None)
    assert payout.to_wire() == transfer_wire("PAY202504300000000001")
    assert order(purpose="货款").to_wire()["purpose"] == "货款"
    for bad in (
        {"bank_request_id": "PAY 1"},
        {"amount": 0},
        {"amount": True},
        {"amount": 10.5},
        {"currency": "RMB"},
        {"currency": "XYZ"},
        {"payee_account_no": ""},
        {"notify_url": "mailto:x@example.invalid"},
    ):
        with pytest.raises(ValueError):
            order(**bad)


def test_answers_are_checked_before_they_are_believed() -> None:
    good = {"bank_request_id": "PAY1", "bank_txn_id": "BTX1", "status": "FAILED", "reason": "x"}
    assert parse_answer(good, "PAY1") == BankAnswer(BankStatus.FAILED, "BTX1", "x")
    assert parse_answer({**good, "reason": ""}, "PAY1").reason is None
    for bad, message in [
        ([], "not a JSON object"),
        ({**good, "bank_request_id": "PAY2"}, "another bank_request_id"),
        ({**good, "status": "DONE"}, "unknown status"),
        ({**good, "bank_txn_id": None}, "bank_txn_id"),
        ({**good, "reason": 5}, "reason"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_answer(bad, "PAY1")


def test_payee_reasons_are_told_apart() -> None:
    assert payee_invalid("payee account closed")
    assert payee_invalid("Payee name does not match the account")
    assert not payee_invalid("refused by the bank's risk control")
    assert not payee_invalid(None)


def test_batch_answers_must_match_the_ids_one_to_one() -> None:
    good = {"bank_request_id": "PAY1", "bank_txn_id": "BTX1", "status": "PROCESSING"}
    refusal = {"bank_request_id": "PAY2", "status": "REFUSED", "code": 409, "error": "taken"}
    first, second = parse_batch_answer({"results": [good, refusal]}, ["PAY1", "PAY2"])
    assert first == BankAnswer(BankStatus.PROCESSING, "BTX1")
    assert isinstance(second, BankRequestRefused)
    assert (second.status_code, second.reason) == (409, "taken")
    for bad, message in [
        ([], "not a JSON object"),
        ({"results": {}}, "results: missing or not a list"),
        ({"results": [good]}, "1 items for 2 orders"),
        ({"results": [good, refusal, good]}, "3 items for 2 orders"),
        ({"results": [refusal, good]}, r"results\[0\]: answer is about another"),
        ({"results": [good, {**refusal, "code": 500}]}, r"results\[1\]: code"),
        ({"results": [good, {**refusal, "code": "409"}]}, r"results\[1\]: code"),
        ({"results": [good, {**refusal, "bank_request_id": None}]}, "another bank_request_id"),
        ({"results": [good, None]}, r"results\[1\]: answer is not a JSON object"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_batch_answer(bad, ["PAY1", "PAY2"])
