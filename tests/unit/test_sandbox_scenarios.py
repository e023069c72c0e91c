"""Sandbox scenarios: the client's body read strictly, the simulator's wire, and the plan a
scenario forces on its transfer (and on no other)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from fundhub.bank_simulator.payouts_bank import PayoutBank, PayoutBehaviour
from fundhub.bank_simulator.sandbox_scenarios import ScenarioBook, forced_plan
from fundhub.common.config import Settings
from fundhub.common.sealing import generate_master_key
from fundhub.gateway.app import create_app
from fundhub.payouts.bank import BankStatus, PayoutOrder
from fundhub.payouts.sandbox import (
    DEFAULT_FAIL_REASON,
    InvalidScenario,
    PayoutScenario,
    parse_scenario_request,
    scenario_from_wire,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def body(**fields: object) -> bytes:
    return json.dumps({"requestId": "req-1", "outcome": "FAILED", **fields}).encode()


def order(pay_id: str) -> PayoutOrder:
    return PayoutOrder(
        pay_id, "6222990000000001", 100, "CNY", "6222000011112222", "Supplier", "Bank",
        "http://gw.example/callbacks/bank",
    )  # fmt: skip


def test_a_scenario_reads_with_its_defaults() -> None:
    scenario = parse_scenario_request(body())
    assert (scenario.request_id, scenario.outcome, scenario.reason) == ("req-1", "FAILED", None)
    assert (scenario.result_delay_ms, scenario.result_copies) == (0, 1)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"outcome": "LOST"}, "outcome"),
        ({"resultCopies": 3}, "resultCopies"),
        ({"resultDelayMs": 60_001}, "resultDelayMs"),
        ({"resultDelayMs": 1.0}, "resultDelayMs"),
        ({"resultCopies": True}, "resultCopies"),
        ({"reason": "x" * 201}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"requestId": "no spaces"}, "requestId"),
        ({"payerAccountId": "A1"}, "payerAccountId"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidScenario) as refused:
        parse_scenario_request(body(**fields))
    assert refused.value.field == named


def test_the_wire_round_trips_and_is_checked() -> None:
    scenario = PayoutScenario("PAY202612010000000001", "RETURNED", None, 1500, 2)
    assert scenario_from_wire(scenario.to_wire()) == scenario
    with pytest.raises(ValueError, match="result_copies"):
        scenario_from_wire({**scenario.to_wire(), "result_copies": 5})
    with pytest.raises(ValueError):
        scenario_from_wire(["not", "an", "object"])


def test_a_forced_failure_comes_late_twice_and_never_in_the_first_answer() -> None:
    bank = PayoutBank(PayoutBehaviour(processing_rate=0.0, never_answer_rate=1.0, seed=1))
    bank.scenarios.add(PayoutScenario("PAY1", "FAILED", None, 2_000, 2))
    forced = bank.submit(order("PAY1"), NOW).transfer
    plain = bank.submit(order("PAY2"), NOW).transfer
    assert forced.plan.outcome is BankStatus.FAILED and forced.plan.reason == DEFAULT_FAIL_REASON
    assert not forced.plan.answer_final and forced.plan.callback and forced.plan.duplicate
    assert forced.plan.callback_after_s == 2.0 < forced.plan.duplicate_after_s
    assert forced.status is BankStatus.PROCESSING
    # The other transfer follows the rates: answered at once, never called back.
    assert plain.plan.answer_final and not plain.plan.callback
    # A resubmission of a known transfer does not consume a later scenario for its id.
    bank.scenarios.add(PayoutScenario("PAY1", "SUCCESS", None, 0, 1))
    assert bank.submit(order("PAY1"), NOW).transfer.plan.outcome is BankStatus.FAILED
    assert bank.scenarios.applied == 1


def test_returned_is_paid_then_returned_with_the_reason() -> None:
    plan = PayoutBank().submit(order("PAY3"), NOW).transfer.plan
    returned = forced_plan(plan, PayoutScenario("PAY3", "RETURNED", "payee refused", 0, 1))
    assert returned.outcome is BankStatus.SUCCESS and returned.reason is None
    assert returned.return_after_s is not None and returned.return_reason == "payee refused"
    assert not returned.duplicate


def test_the_book_is_bounded_and_keeps_the_latest_word() -> None:
    book = ScenarioBook(max_waiting=2)
    for pay_id in ("A", "B", "C"):
        book.add(PayoutScenario(pay_id, "SUCCESS", None, 0, 1))
    assert len(book) == 2 and book.take("A") is None  # the oldest went
    book.add(PayoutScenario("B", "FAILED", None, 0, 1))
    taken = book.take("B")
    assert taken is not None and taken.outcome == "FAILED"
    assert book.take("B") is None


@pytest.mark.parametrize(("env", "mounted"), [("prod", False), ("dev", True), ("test", True)])
def test_only_a_sandbox_gateway_mounts_the_scenario_controls(env: str, mounted: bool) -> None:
    app = create_app(Settings(env=env, master_key=generate_master_key()))
    paths = {getattr(route, "path", "") for route in app.routes}
    assert ("/v1/sandbox/payout-scenarios" in paths) is mounted
    assert ("/v1/sandbox/payout-scenarios" in app.openapi()["paths"]) is mounted
