"""The simulated bank reports payout results in signed batches: gathering, limits, the plan's
duplicates, late returns and withheld callbacks, retries, and stopping (a local stub receiver)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from support.orders import payout_order
from support.receivers import posts_to, serving

from fundhub.bank_simulator import result_batches
from fundhub.bank_simulator.payout_callbacks import PayoutNotifier
from fundhub.bank_simulator.payouts_bank import PayoutBank, PayoutBehaviour, Transfer
from fundhub.common.config import BANK_CALLBACK_PATH as CALLBACK_PATH
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify
from fundhub.payouts.bank import RESULTS_METHOD, PayoutOrder
from fundhub.payouts.bank_results import MAX_BATCH_RESULTS, parse_bank_results

APP_ID = "2021091188888888"
NOW = datetime(2025, 4, 30, 6, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


@dataclass
class Gateway:
    """Verifies each notification's signature, records it, answers from a script then success."""

    public_pem: str
    script: list[tuple[int, str]] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        params = await request.json()
        assert rsa2_verify(params, params["sign"], load_public_key(self.public_pem))
        self.notices.append(params)
        self.arrived.set()
        status, text = self.script.pop(0) if self.script else (200, "success")
        return web.Response(status=status, text=text)

    def batches(self) -> list[list[dict[str, Any]]]:
        return [json.loads(notice["biz_content"])["results"] for notice in self.notices]

    def results(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches() for item in batch]


@pytest.fixture
async def gateway(keys: tuple[str, str]) -> AsyncIterator[Gateway]:
    state = Gateway(keys[1])
    async with serving(posts_to(CALLBACK_PATH, state.handle)) as url:
        state.url = url + CALLBACK_PATH
        yield state


@pytest.fixture
def wide_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gather long enough that results meant to land together do so on a loaded machine
    (submitting a thousand transfers can take longer than the usual few ms)."""
    monkeypatch.setattr(result_batches, "GATHER_S", 0.2)


def order(request_id: str, notify_url: str) -> PayoutOrder:
    return payout_order(request_id, notify_url=notify_url)


def submit_all(
    bank: PayoutBank, notifier: PayoutNotifier, url: str, count: int, prefix: str = "PAYB"
) -> list[Transfer]:
    """Submit and follow ``count`` transfers in one go, so equal delays land together."""
    transfers = []
    for n in range(count):
        transfer = bank.submit(order(f"{prefix}{n:05d}", url), NOW).transfer
        notifier.follow(transfer)
        transfers.append(transfer)
    return transfers


def notifier_for(bank: PayoutBank, keys: tuple[str, str], **options: Any) -> PayoutNotifier:
    return PayoutNotifier(bank, APP_ID, keys[0], **options)


async def test_results_due_together_arrive_in_one_signed_notification(
    gateway: Gateway, keys: tuple[str, str], wide_gather: None
) -> None:
    bank = PayoutBank(PayoutBehaviour(callback_delay_ms=(30, 30), seed=1))
    notifier = notifier_for(bank, keys)
    async with notifier.running():
        transfers = submit_all(bank, notifier, gateway.url, 50)
        assert await notifier.drain(10)
    assert len(gateway.notices) == 1
    (notice,) = gateway.notices
    assert notice["method"] == RESULTS_METHOD and notice["app_id"] == APP_ID
    parsed = parse_bank_results(json.loads(notice["biz_content"]))  # the gateway's own reading
    assert [item.result.bank_request_id for item in parsed] == [
        t.bank_request_id for t in transfers
    ]
    assert {item.result.status.value for item in parsed} == {"SUCCESS"}
    stats = bank.stats.to_json()["callbacks"]
    assert (stats["sent"], stats["delivered"], stats["failed"]) == (50, 50, 0)
    assert notifier.batches_sent == 1 and notifier.pending == 0


async def test_more_results_than_a_batch_holds_are_split(
    gateway: Gateway, keys: tuple[str, str], wide_gather: None
) -> None:
    count = 2 * MAX_BATCH_RESULTS + 100
    bank = PayoutBank(PayoutBehaviour(callback_delay_ms=(20, 20), seed=1))
    notifier = notifier_for(bank, keys)
    async with notifier.running():
        submit_all(bank, notifier, gateway.url, count)
        assert await notifier.drain(20)
    sizes = sorted(len(batch) for batch in gateway.batches())
    assert sizes == [100, MAX_BATCH_RESULTS, MAX_BATCH_RESULTS]
    assert len({r["bank_request_id"] for r in gateway.results()}) == count
    assert bank.stats.callbacks_delivered == count


async def test_duplicates_and_late_returns_arrive_and_withheld_results_do_not(
    gateway: Gateway, keys: tuple[str, str]
) -> None:
    behaviour = PayoutBehaviour(
        fail_rate=0.3,
        never_answer_rate=0.4,
        duplicate_callback_rate=0.5,
        late_return_rate=0.5,
        callback_delay_ms=(5, 40),
        return_delay_ms=(20, 80),
        seed=3,
    )
    bank = PayoutBank(behaviour)
    notifier = notifier_for(bank, keys)
    async with notifier.running():
        transfers = submit_all(bank, notifier, gateway.url, 60)
        assert await notifier.drain(10)

    expected = Counter[tuple[str, str]]()
    withheld = 0
    for transfer in transfers:
        plan, copies = transfer.plan, 2 if transfer.plan.duplicate else 1
        if plan.callback:
            expected[(transfer.bank_request_id, plan.outcome.value)] += copies
        else:
            withheld += 1
        if plan.return_after_s is not None:  # always announced, withheld outcome or not
            expected[(transfer.bank_request_id, "RETURNED")] += copies
    received = Counter((r["bank_request_id"], r["status"]) for r in gateway.results())
    assert received == expected
    # The plan's mix happened, so each rule above was exercised.
    assert withheld > 0 and any(t.plan.duplicate for t in transfers)
    assert any(not t.plan.callback and t.plan.return_after_s for t in transfers)
    assert len(gateway.notices) < sum(expected.values()), "results share notifications"
    stats = bank.stats.to_json()["callbacks"]
    assert stats["withheld"] == withheld
    assert stats["sent"] == stats["delivered"] == sum(expected.values())
    assert stats["duplicated"] == sum(expected.values()) - len(expected)


async def test_a_batch_being_retried_does_not_hold_up_later_results(
    gateway: Gateway, keys: tuple[str, str], wide_gather: None
) -> None:
    gateway.script = [(200, "fail: busy")]  # the first POST fails once
    bank = PayoutBank(PayoutBehaviour(callback_delay_ms=(5, 5), seed=1))
    notifier = notifier_for(bank, keys, retries=2, retry_interval_s=1.0)
    async with notifier.running():
        submit_all(bank, notifier, gateway.url, 3, prefix="PAYFIRST")
        await asyncio.wait_for(gateway.arrived.wait(), timeout=5)
        submit_all(bank, notifier, gateway.url, 2, prefix="PAYLATER")
        assert await notifier.drain(10)
    ids = [[r["bank_request_id"][:-5] for r in batch] for batch in gateway.batches()]
    assert ids == [["PAYFIRST"] * 3, ["PAYLATER"] * 2, ["PAYFIRST"] * 3]
    assert gateway.notices[0] == gateway.notices[2], "a retry resends the same signed batch"
    stats = bank.stats.to_json()["callbacks"]
    assert (stats["sent"], stats["delivered"], stats["failed"]) == (5, 5, 0)


async def test_a_batch_given_up_counts_each_of_its_results_failed(
    gateway: Gateway, keys: tuple[str, str], wide_gather: None
) -> None:
    gateway.script = [(503, "fail: down")] * 2
    bank = PayoutBank(PayoutBehaviour(callback_delay_ms=(5, 5), seed=1))
    notifier = notifier_for(bank, keys, retries=1, retry_interval_s=0.0)
    async with notifier.running():
        submit_all(bank, notifier, gateway.url, 4)
        assert await notifier.drain(10)
    assert len(gateway.notices) == 2
    stats = bank.stats.to_json()["callbacks"]
    assert (stats["sent"], stats["delivered"], stats["failed"]) == (4, 0, 4)


async def test_stopping_forgets_what_was_not_sent(gateway: Gateway, keys: tuple[str, str]) -> None:
    bank = PayoutBank(PayoutBehaviour(callback_delay_ms=(0, 0), seed=1))
    notifier = notifier_for(bank, keys)
    async with notifier.running():
        submit_all(bank, notifier, gateway.url, 5)
        await asyncio.sleep(0)  # timelines ran: results queued, the gather not over
        assert notifier.pending > 0
    assert notifier.pending == 0 and not notifier.is_running
    await asyncio.sleep(0.05)
    assert gateway.notices == []
