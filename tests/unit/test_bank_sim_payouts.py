"""The simulated bank's payout book and decisions, and its signed result notification (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from support.orders import transfer_wire

from fundhub.bank_simulator.payout_callbacks import (
    build_result_notification,
    build_results_notification,
    result_biz,
)
from fundhub.bank_simulator.payouts_bank import (
    FAIL_REASONS,
    RETURN_REASONS,
    Fault,
    PayoutBank,
    PayoutBehaviour,
    TransferConflict,
    TransferRequestError,
    attempt_fault,
    bank_txn_id,
    order_from_wire,
    plan_transfer,
)
from fundhub.common.clock import parse_bank_time
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify
from fundhub.payouts.bank import (
    RESULT_METHOD,
    RESULTS_METHOD,
    BankStatus,
    PayoutOrder,
    payee_invalid,
)
from fundhub.payouts.bank_results import MAX_BATCH_RESULTS

NOW = datetime(2025, 4, 30, 6, 0, 0, tzinfo=UTC)


def wire(**changes: Any) -> dict[str, Any]:
    return transfer_wire(
        **{
            "payee_bank_name": "中国建设银行上海分行",
            "purpose": "货款",
            "notify_url": "http://127.0.0.1:8000/callbacks/bank",
            **changes,
        }
    )


def order(request_id: str = "PAY202504300000000001", **changes: Any) -> PayoutOrder:
    return order_from_wire(wire(bank_request_id=request_id, **changes))


def ids(count: int) -> list[str]:
    return [f"PAY20250430{n:010d}" for n in range(count)]


# --- behaviour ------------------------------------------------------------------------------


def test_behaviour_reads_camel_case_and_draws_a_seed_when_none_is_given() -> None:
    behaviour = PayoutBehaviour.model_validate(
        {"failRate": 0.1, "callbackDelayMs": [5, 10], "neverAnswerRate": 0.02}
    )
    assert behaviour.fail_rate == 0.1
    assert behaviour.callback_delay_ms == (5, 10)
    assert behaviour.seed is None
    seeded = behaviour.with_seed()
    assert isinstance(seeded.seed, int)
    assert seeded.with_seed() is seeded
    assert seeded.to_json()["callbackDelayMs"] == [5, 10]
    assert PayoutBank(behaviour).behaviour.seed is not None


@pytest.mark.parametrize(
    "body",
    [
        {"failRate": 1.5},
        {"timeoutRate": -0.1},
        {"callbackDelayMs": [10, 5]},
        {"callbackDelayMs": [-1, 5]},
        {"returnDelayMs": [0, 4_000_000]},
        {"timeoutRate": 0.6, "serverErrorRate": 0.5},
        {"failrate": 0.1},
        {"timeoutDelayMs": -1},
    ],
)
def test_behaviour_refuses_nonsense(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PayoutBehaviour.model_validate(body)


# --- decisions ------------------------------------------------------------------------------


def test_a_plan_depends_on_the_seed_and_the_id_only() -> None:
    behaviour = PayoutBehaviour(
        fail_rate=0.5, processing_rate=0.5, duplicate_callback_rate=0.5, seed=42
    )
    plans = [plan_transfer(behaviour, request_id) for request_id in ids(50)]
    assert plans == [plan_transfer(behaviour, request_id) for request_id in ids(50)]
    other_seed = behaviour.model_copy(update={"seed": 43})
    assert plans != [plan_transfer(other_seed, request_id) for request_id in ids(50)]
    assert len({plan.outcome for plan in plans}) == 2
    assert len({plan.callback_after_s for plan in plans}) == 50


def test_one_rate_does_not_shift_the_dice_of_another() -> None:
    base = PayoutBehaviour(fail_rate=0.3, seed=5)
    more_duplicates = base.model_copy(update={"duplicate_callback_rate": 0.9})
    for request_id in ids(100):
        assert plan_transfer(base, request_id).outcome == (
            plan_transfer(more_duplicates, request_id).outcome
        )


def test_extreme_rates_decide_every_transfer_alike() -> None:
    always = PayoutBehaviour(
        fail_rate=1.0,
        processing_rate=0.0,
        never_answer_rate=1.0,
        duplicate_callback_rate=1.0,
        late_return_rate=1.0,
        callback_delay_ms=(100, 100),
        seed=1,
    )
    for request_id in ids(30):
        plan = plan_transfer(always, request_id)
        assert plan.outcome is BankStatus.FAILED
        assert plan.reason in FAIL_REASONS
        assert plan.answer_final and not plan.callback and plan.duplicate
        assert plan.return_after_s is None, "only a paid payout can come back"
        assert plan.callback_after_s == pytest.approx(0.1)

    never = PayoutBehaviour(late_return_rate=1.0, return_delay_ms=(1_000, 2_000), seed=1)
    for request_id in ids(30):
        plan = plan_transfer(never, request_id)
        assert plan.outcome is BankStatus.SUCCESS and plan.reason is None
        assert not plan.answer_final and plan.callback and not plan.duplicate
        assert plan.return_after_s is not None and 1.0 <= plan.return_after_s <= 2.0
        assert plan.return_reason in RETURN_REASONS


def test_rates_are_honoured_over_many_transfers() -> None:
    behaviour = PayoutBehaviour(fail_rate=0.1, late_return_rate=0.02, seed=2024)
    plans = [plan_transfer(behaviour, request_id) for request_id in ids(5_000)]
    failed = sum(plan.outcome is BankStatus.FAILED for plan in plans)
    returned = sum(plan.return_after_s is not None for plan in plans)
    assert 400 <= failed <= 600
    assert 50 <= returned <= 150
    payee_failures = sum(payee_invalid(plan.reason) for plan in plans)
    assert 0 < payee_failures < failed


def test_faults_are_drawn_per_attempt() -> None:
    behaviour = PayoutBehaviour(timeout_rate=0.3, server_error_rate=0.2, seed=9)
    faults = [attempt_fault(behaviour, request_id, 1) for request_id in ids(2_000)]
    assert 450 <= faults.count(Fault.TIMEOUT) <= 750
    assert 280 <= faults.count(Fault.SERVER_ERROR) <= 520
    assert faults == [attempt_fault(behaviour, request_id, 1) for request_id in ids(2_000)]
    second = [attempt_fault(behaviour, request_id, 2) for request_id in ids(2_000)]
    assert second != faults, "a retry is a new draw"
    none = PayoutBehaviour(seed=9)
    assert {attempt_fault(none, request_id, 1) for request_id in ids(100)} == {None}


def test_bank_txn_ids_are_stable_per_request() -> None:
    assert bank_txn_id("PAY1") == bank_txn_id("PAY1")
    assert bank_txn_id("PAY1") != bank_txn_id("PAY2")
    assert len(bank_txn_id("PAY1")) == 20


# --- requests -------------------------------------------------------------------------------


def test_a_valid_request_becomes_an_order() -> None:
    parsed = order_from_wire(wire(currency="RMB", extra_field="ignored"))
    assert parsed.amount == 1000 and parsed.currency == "CNY"
    assert parsed.purpose == "货款"
    assert order_from_wire(wire(purpose=...)).purpose is None
    assert order_from_wire(wire(purpose="")).purpose is None
    assert order_from_wire(parsed.to_wire()) == parsed


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bank_request_id": ""}, "bank_request_id"),
        ({"bank_request_id": "PAY 1"}, "bank_request_id"),
        ({"bank_request_id": "P" * 65}, "bank_request_id"),
        ({"payer_account": ...}, "payer_account"),
        ({"payer_account": "1" * 33}, "payer_account"),
        ({"amount": 1000}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "10.5"}, "amount"),
        ({"amount": "1" * 17}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": None}, "currency"),
        ({"payee_account_no": "6217-0000"}, "payee_account_no"),
        ({"payee_account_no": "1" * 35}, "payee_account_no"),
        ({"payee_account_name": "名" * 101}, "payee_account_name"),
        ({"payee_bank_name": 5}, "payee_bank_name"),
        ({"purpose": "x" * 201}, "purpose"),
        ({"notify_url": "ftp://example.invalid/"}, "notify_url"),
        ({"notify_url": ...}, "notify_url"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TransferRequestError, match=f"^{field}:"):
        order_from_wire(wire(**changes))


def test_a_non_object_is_refused() -> None:
    with pytest.raises(TransferRequestError, match=r"^body:"):
        order_from_wire(["not", "an", "object"])


# --- the book -------------------------------------------------------------------------------


def test_a_transfer_is_taken_once_and_repeats_change_nothing() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=3))
    first = bank.submit(order(), NOW)
    assert first.created and first.fault is None
    assert first.transfer.status is BankStatus.PROCESSING
    again = bank.submit(order(), NOW + timedelta(seconds=5))
    assert not again.created and again.transfer is first.transfer
    assert first.transfer.submits == 2
    assert len(bank) == 1
    answer = first.transfer.answer()
    assert answer == {
        "bank_request_id": "PAY202504300000000001",
        "bank_txn_id": bank_txn_id("PAY202504300000000001"),
        "status": "PROCESSING",
        "amount": "1000",
        "currency": "CNY",
    }
    stats = bank.stats.to_json()
    assert (stats["transfers"], stats["submits"], stats["duplicateSubmits"]) == (1, 2, 1)


def test_the_same_id_with_other_details_is_a_conflict() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=3))
    bank.submit(order(), NOW)
    with pytest.raises(TransferConflict):
        bank.submit(order(amount="1001"), NOW)
    with pytest.raises(TransferConflict):
        bank.submit(order(payee_account_no="6217000010002345679"), NOW)
    assert bank.stats.conflicts == 2
    assert bank.get("PAY202504300000000001").order.amount == 1000  # type: ignore[union-attr]


def test_outcomes_land_once_and_only_paid_payouts_come_back() -> None:
    bank = PayoutBank(PayoutBehaviour(fail_rate=0.5, late_return_rate=1.0, seed=11))
    request_ids = ids(40)
    for request_id in request_ids:
        bank.submit(order(request_id), NOW)
    later = NOW + timedelta(seconds=1)
    for request_id in request_ids:
        assert bank.settle(request_id, later)
        assert not bank.settle(request_id, later), "an outcome lands once"
    statuses = {request_id: bank.get(request_id).status for request_id in request_ids}  # type: ignore[union-attr]
    assert set(statuses.values()) == {BankStatus.SUCCESS, BankStatus.FAILED}
    for request_id, status in statuses.items():
        returned = bank.return_payout(request_id, later)
        transfer = bank.get(request_id)
        assert transfer is not None
        assert returned == (status is BankStatus.SUCCESS)
        if returned:
            assert transfer.status is BankStatus.RETURNED
            assert transfer.answer()["reason"] in RETURN_REASONS
        else:
            assert transfer.answer()["reason"] in FAIL_REASONS
        assert parse_bank_time(transfer.answer()["finished_time"]) == later
    assert not bank.settle("PAY-unknown", later)
    assert not bank.return_payout("PAY-unknown", later)

    stats = bank.stats.to_json()
    failed = sum(status is BankStatus.FAILED for status in statuses.values())
    assert stats["statuses"] == {
        "PROCESSING": 0,
        "SUCCESS": 0,
        "FAILED": failed,
        "RETURNED": 40 - failed,
    }
    assert stats["amounts"] == {
        "CNY": {
            "PROCESSING": 0,
            "SUCCESS": 0,
            "FAILED": failed * 1000,
            "RETURNED": (40 - failed) * 1000,
        }
    }


def test_a_final_first_answer_settles_at_once() -> None:
    bank = PayoutBank(PayoutBehaviour(processing_rate=0.0, fail_rate=1.0, seed=4))
    submission = bank.submit(order(), NOW)
    assert submission.transfer.status is BankStatus.FAILED
    assert submission.transfer.finished_at == NOW
    assert bank.stats.final_first_answers == 1


def test_faults_are_counted_and_the_transfer_is_made_anyway() -> None:
    bank = PayoutBank(PayoutBehaviour(timeout_rate=1.0, seed=4))
    submission = bank.submit(order(), NOW)
    assert submission.fault is Fault.TIMEOUT and submission.created
    bank.set_behaviour(PayoutBehaviour(server_error_rate=1.0, seed=4))
    assert bank.submit(order(), NOW).fault is Fault.SERVER_ERROR
    bank.set_behaviour(PayoutBehaviour(seed=4))
    assert bank.submit(order(), NOW).fault is None
    assert (bank.stats.timeouts, bank.stats.server_errors, len(bank)) == (1, 1, 1)


def test_queries_tell_the_state_or_not_found() -> None:
    bank = PayoutBank(PayoutBehaviour(seed=4))
    assert bank.query("PAY202504300000000001") is None
    bank.submit(order(), NOW)
    answer = bank.query("PAY202504300000000001")
    assert answer is not None and answer["status"] == "PROCESSING"
    assert (bank.stats.queries, bank.stats.queries_not_found) == (2, 1)


def test_a_new_behaviour_applies_to_later_transfers_only() -> None:
    bank = PayoutBank(PayoutBehaviour(fail_rate=0.0, seed=8))
    bank.submit(order("PAY1"), NOW)
    applied = bank.set_behaviour(PayoutBehaviour(fail_rate=1.0))
    assert applied.seed is not None and bank.behaviour == applied
    bank.submit(order("PAY2"), NOW)
    assert bank.get("PAY1").plan.outcome is BankStatus.SUCCESS  # type: ignore[union-attr]
    assert bank.get("PAY2").plan.outcome is BankStatus.FAILED  # type: ignore[union-attr]


# --- the result notification ----------------------------------------------------------------


def test_the_result_notification_is_signed_like_the_transfer_notify() -> None:
    private_pem, public_pem = generate_rsa_keypair()
    bank = PayoutBank(PayoutBehaviour(fail_rate=1.0, seed=1))
    transfer = bank.submit(order(), NOW).transfer
    bank.settle(transfer.bank_request_id, NOW + timedelta(seconds=2))
    biz = result_biz(transfer)
    params = build_result_notification(biz, "2021091188888888", private_pem, now=NOW)
    assert rsa2_verify(params, params["sign"], load_public_key(public_pem))
    assert {key: params[key] for key in params if key not in {"sign", "biz_content"}} == {
        "app_id": "2021091188888888",
        "method": RESULT_METHOD,
        "format": "json",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": "2025-04-30 14:00:00",
        "version": "1.0",
    }
    assert json.loads(params["biz_content"]) == biz
    assert biz["status"] == "FAILED" and biz["reason"] in FAIL_REASONS
    assert biz["finished_time"] == "2025-04-30 14:00:02"
    assert biz["amount"] == "1000" and biz["bank_txn_id"] == transfer.bank_txn_id

    success = PayoutBank(PayoutBehaviour(seed=1)).submit(order(), NOW).transfer
    assert result_biz(success)["reason"] == ""


def test_the_batch_notification_carries_many_results_under_one_signature() -> None:
    private_pem, public_pem = generate_rsa_keypair()
    bank = PayoutBank(PayoutBehaviour(fail_rate=0.5, seed=1))
    transfers = [bank.submit(order(request_id), NOW).transfer for request_id in ids(3)]
    for transfer in transfers:
        bank.settle(transfer.bank_request_id, NOW + timedelta(seconds=2))
    items = [result_biz(transfer) for transfer in transfers]
    params = build_results_notification(items, "2021091188888888", private_pem, now=NOW)
    assert rsa2_verify(params, params["sign"], load_public_key(public_pem))
    single = build_result_notification(items[0], "2021091188888888", private_pem, now=NOW)
    public = {key for key in params if key not in {"sign", "biz_content", "method"}}
    assert {k: params[k] for k in public} == {k: single[k] for k in public}
    assert params["method"] == RESULTS_METHOD
    assert json.loads(params["biz_content"]) == {"results": items}


@pytest.mark.parametrize("count", [0, MAX_BATCH_RESULTS + 1])
def test_a_batch_notification_holds_one_to_the_maximum(count: int) -> None:
    private_pem, _ = generate_rsa_keypair()
    item = result_biz(PayoutBank(PayoutBehaviour(seed=1)).submit(order(), NOW).transfer)
    with pytest.raises(ValueError, match="1 to 500"):
        build_results_notification([item] * count, "2021091188888888", private_pem)
