"""The simulator's own retry policy, against a tiny local stub (not a stand-in for the gateway)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from support.receivers import posts_to, serving

from fundhub.bank_simulator.sender import (
    BankSender,
    Delivery,
    Outcome,
    callback_url,
    open_sender,
    record_id_of,
)
from fundhub.common.config import BANK_CALLBACK_PATH as CALLBACK_PATH

SIGN = "c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ="


def notice(record_id: str = "R00000001") -> dict[str, str]:
    return {
        "app_id": "20210911888888888888888888",
        "method": "bkfunds.acct.transfer.notify",
        "biz_content": json.dumps({"record_id": record_id, "trans_amount": "100"}),
        "sign": SIGN,
    }


@dataclass
class Stub:
    """Answers from a script, then ``success``; records what it received."""

    script: list[tuple[int, str]] = field(default_factory=list)
    delay_s: float = 0.0
    received: list[dict[str, str]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.received.append(await request.json())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status, text = self.script.pop(0) if self.script else (200, "success")
            return web.Response(status=status, text=text)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    state = Stub()
    async with serving(posts_to(CALLBACK_PATH, state.handle)) as url:
        state.url = url
        yield state


class Tally:
    def __init__(self) -> None:
        self.retries = 0
        self.outcomes: list[Outcome] = []

    def retried(self) -> None:
        self.retries += 1

    def delivered(self, delivery: Delivery) -> None:
        self.outcomes.append(delivery.outcome)


async def test_fail_twice_then_success_is_delivered_on_the_third_attempt(stub: Stub) -> None:
    stub.script = [(200, "fail: database unavailable"), (503, "busy")]
    tally = Tally()
    async with open_sender(stub.url, retries=3, retry_interval_s=0.2, observer=tally) as sender:
        delivery = await sender.send(notice())

    assert delivery.outcome is Outcome.SUCCESS and delivery.ok
    assert delivery.attempts == 3
    assert delivery.answer == "success"
    assert delivery.record_id == "R00000001"
    assert len(stub.received) == 3
    assert all(body == notice() for body in stub.received)  # the same notice each time
    assert all(ct.startswith("application/json") for ct in stub.content_types)
    gaps = [later - earlier for earlier, later in zip(stub.times, stub.times[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps)
    assert (sender.succeeded, sender.failed, sender.retried) == (1, 0, 2)
    assert tally.retries == 2 and tally.outcomes == [Outcome.SUCCESS]


async def test_gives_up_after_the_last_retry(stub: Stub) -> None:
    stub.script = [(200, "fail")] * 10
    tally = Tally()
    async with open_sender(stub.url, retries=3, retry_interval_s=0.01, observer=tally) as sender:
        delivery = await sender.send(notice())

    assert delivery.outcome is Outcome.FAILURE
    assert delivery.attempts == 4  # the first POST and 3 retries
    assert delivery.answer == "HTTP 200: fail"
    assert len(stub.received) == 4
    assert (sender.succeeded, sender.failed, sender.retried) == (0, 1, 3)
    assert tally.outcomes == [Outcome.FAILURE]


@pytest.mark.parametrize(
    ("status", "text", "answer"),
    [
        (200, "fail", "HTTP 200: fail"),
        (200, "SUCCESS", "HTTP 200: SUCCESS"),
        (200, "", "HTTP 200: "),
        (500, "success", "HTTP 500: success"),
        (404, "not found", "HTTP 404: not found"),
    ],
)
async def test_only_200_success_counts(stub: Stub, status: int, text: str, answer: str) -> None:
    stub.script = [(status, text)]
    async with open_sender(stub.url, retries=0) as sender:
        delivery = await sender.send(notice())

    assert delivery.outcome is Outcome.FAILURE
    assert delivery.answer == answer
    assert delivery.status_code == status


async def test_trailing_newline_after_success_is_accepted(stub: Stub) -> None:
    stub.script = [(200, "success\n")]
    async with open_sender(stub.url, retries=0) as sender:
        assert (await sender.send(notice())).ok


async def test_timeout_is_a_failure_and_is_retried(stub: Stub) -> None:
    stub.delay_s = 0.5
    async with open_sender(stub.url, retries=1, retry_interval_s=0.0, timeout_s=0.1) as sender:
        delivery = await sender.send(notice())

    assert delivery.outcome is Outcome.FAILURE
    assert delivery.attempts == 2
    assert delivery.answer.startswith("timeout")


async def test_refused_connection_is_a_failure() -> None:
    async with open_sender("http://127.0.0.1:9", retries=1, retry_interval_s=0.0) as sender:
        delivery = await sender.send(notice())

    assert delivery.outcome is Outcome.FAILURE
    assert delivery.attempts == 2
    assert delivery.answer.startswith("transport error")
    assert delivery.status_code is None


async def test_failures_are_logged_without_the_signature(stub: Stub) -> None:
    stub.script = [(200, "fail: bad sign " + SIGN)] + [(200, "fail")] * 3
    with capture_logs() as logs:
        async with open_sender(stub.url, retries=1, retry_interval_s=0.0) as sender:
            await sender.send(notice("R77"))

    events = [entry["event"] for entry in logs]
    assert events == [
        "bank_notify_attempt_failed",
        "bank_notify_attempt_failed",
        "bank_notify_gave_up",
    ]
    assert all(entry["record_id"] == "R77" for entry in logs)
    assert all("sign" not in entry for entry in logs)
    assert SIGN not in json.dumps(logs)
    assert "[redacted]" in logs[0]["reason"]


async def test_send_all_bounds_concurrency_and_keeps_order(stub: Stub) -> None:
    stub.delay_s = 0.05
    batch = [notice(f"R{n:08d}") for n in range(20)]
    seen: list[Delivery] = []
    async with open_sender(stub.url, retries=0) as sender:
        report = await sender.send_all(batch, concurrency=4, on_delivery=seen.append)

    assert stub.max_in_flight <= 4
    assert stub.max_in_flight >= 2
    assert report.total == 20 and report.succeeded == 20 and report.failed == 0
    assert [d.record_id for d in report.deliveries] == [f"R{n:08d}" for n in range(20)]
    assert len(seen) == 20
    assert report.summary()["notifications"] == 20
    assert report.per_second > 0


async def test_send_all_counts_failures_and_retries(stub: Stub) -> None:
    stub.script = [(200, "fail")]
    async with open_sender(stub.url, retries=1, retry_interval_s=0.0) as sender:
        report = await sender.send_all([notice("A"), notice("B")], concurrency=1)

    assert (report.succeeded, report.failed, report.retries) == (2, 0, 1)
    assert report.deliveries[0].attempts == 2


async def test_send_all_of_nothing() -> None:
    async with open_sender("http://127.0.0.1:9") as sender:
        report = await sender.send_all([], concurrency=8)
    assert report.total == 0 and report.deliveries == []


@pytest.mark.parametrize(
    "policy",
    [{"retries": -1}, {"retry_interval_s": -1.0}, {"timeout_s": 0.0}],
)
async def test_sender_refuses_a_bad_policy(policy: dict[str, float]) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError):
            BankSender(session, "http://127.0.0.1:9/callbacks/bank", **policy)  # type: ignore[arg-type]


def test_callback_url_and_record_id() -> None:
    assert callback_url("http://gw:8000/") == "http://gw:8000/callbacks/bank"
    assert record_id_of(notice("X1")) == "X1"
    assert record_id_of({"biz_content": "not json"}) is None
    assert record_id_of({}) is None
