"""The merchant's state machine: review, material versions, settlement account verification and
close; what each depository result changes, what it tells the client, what it leaves alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.merchants.states import (
    MAX_CONFIRMATIONS,
    TOO_MANY_WRONG_AMOUNTS,
    Binding,
    BindingState,
    Buckets,
    Merchant,
    MerchantState,
    RequestKind,
    ResultStatus,
    VersionState,
    bind_account,
    change_materials,
    close,
    confirm_amount,
    on_result,
)

OK, NO = ResultStatus.SUCCESS, ResultStatus.FAILED
PENDING = Merchant("mch_1", MerchantState.PENDING_REVIEW, None, 1, True)
ACTIVE = Merchant("mch_1", MerchantState.ACTIVE, 1, 1, False, member_no="M1")
EMPTY = Buckets(0, 0, 0)


def refused(call: object, code: ErrorCode) -> str:
    assert callable(call)
    with pytest.raises(FundhubError) as caught:
        call()
    assert caught.value.error is code
    return caught.value.message


# --- review ------------------------------------------------------------------------------------


def test_approval_activates_on_version_one_and_says_so() -> None:
    change = on_result(RequestKind.OPEN, "r1", PENDING, 1, None, OK, None, "M0001")
    assert change.merchant is not None
    assert change.merchant.state is MerchantState.ACTIVE
    assert change.merchant.approved_version == 1 and not change.merchant.version_pending
    assert change.merchant.member_no == "M0001"
    assert change.version is not None and change.version.state is VersionState.APPROVED
    assert [(e.type, e.key) for e in change.events] == [("MERCHANT_APPROVED", "ACTIVE:1")]


def test_a_registered_existing_account_is_settled_as_an_opening() -> None:
    change = on_result(RequestKind.REGISTER, "r1", PENDING, 1, None, OK, None, "M0002")
    assert change.merchant is not None and change.merchant.state is MerchantState.ACTIVE
    assert change.merchant.member_no == "M0002" and change.merchant.approved_version == 1
    refused = on_result(RequestKind.REGISTER, "r1", PENDING, 1, None, NO, "name refused")
    assert refused.merchant is not None and refused.merchant.state is MerchantState.REJECTED
    late = on_result(RequestKind.REGISTER, "r1", ACTIVE, 1, None, OK, None, "M0002")
    assert late.stale and late.merchant is None


def test_rejection_keeps_the_banks_reason() -> None:
    change = on_result(RequestKind.OPEN, "r1", PENDING, 1, None, NO, "name refused")
    assert change.merchant is not None and change.merchant.state is MerchantState.REJECTED
    assert change.merchant.reason == "name refused"
    assert change.version is not None and change.version.reason == "name refused"
    assert [e.key for e in change.events] == ["REJECTED:1"]


def test_a_failure_without_a_reason_gets_one() -> None:
    change = on_result(RequestKind.OPEN, "r1", PENDING, 1, None, NO, None)
    assert change.merchant is not None and change.merchant.reason


def test_a_result_that_does_not_fit_changes_nothing_and_alerts() -> None:
    change = on_result(RequestKind.OPEN, "r1", ACTIVE, 1, None, NO, "late")
    assert change.stale and change.alert and change.merchant is None and not change.events
    processing = on_result(RequestKind.OPEN, "r1", PENDING, 1, None, ResultStatus.PROCESSING, None)
    assert processing.stale and not processing.alert


# --- material versions ---------------------------------------------------------------------------


def test_a_material_change_is_reviewed_while_the_merchant_trades_on_the_version_in_force() -> None:
    new = change_materials(ACTIVE, None, "fp1", "fp2")
    assert new is not None
    assert (new.version, new.kind, new.merchant_state) == (
        2,
        RequestKind.MATERIALS,
        MerchantState.ACTIVE,
    )
    reviewing = replace(ACTIVE, latest_version=2, version_pending=True)
    approved = on_result(RequestKind.MATERIALS, "r2", reviewing, 2, None, OK, None)
    assert approved.merchant is not None
    assert approved.merchant.state is MerchantState.ACTIVE
    assert approved.merchant.approved_version == 2
    assert [e.key for e in approved.events] == ["MATERIALS_APPROVED:2"]
    rejected = on_result(RequestKind.MATERIALS, "r2", reviewing, 2, None, NO, "licence expired")
    assert rejected.merchant is not None
    assert rejected.merchant.approved_version == 1  # still trading on version 1
    assert rejected.merchant.state is MerchantState.ACTIVE
    assert rejected.version is not None and rejected.version.state is VersionState.REJECTED
    assert [e.key for e in rejected.events] == ["MATERIALS_REJECTED:2"]


def test_the_same_material_again_changes_nothing() -> None:
    assert change_materials(ACTIVE, None, "fp1", "fp1") is None
    reviewing = replace(ACTIVE, latest_version=2, version_pending=True)
    assert change_materials(reviewing, "fp2", "fp1", "fp2") is None


def test_another_change_while_one_is_reviewed_is_refused() -> None:
    reviewing = replace(ACTIVE, latest_version=2, version_pending=True)
    message = refused(
        lambda: change_materials(reviewing, "fp2", "fp1", "fp3"), ErrorCode.MERCHANT_STATE_CONFLICT
    )
    assert "version 2 is under review" in message
    refused(
        lambda: change_materials(PENDING, "fp1", None, "fp3"), ErrorCode.MERCHANT_STATE_CONFLICT
    )


def test_a_rejected_merchant_may_try_again_with_new_material() -> None:
    rejected = replace(PENDING, state=MerchantState.REJECTED, version_pending=False, reason="x")
    new = change_materials(rejected, None, None, "fp2")
    assert new is not None
    assert (new.version, new.kind, new.merchant_state) == (
        2,
        RequestKind.OPEN,
        MerchantState.PENDING_REVIEW,
    )


@pytest.mark.parametrize("state", [MerchantState.CLOSING, MerchantState.CLOSED])
def test_closing_or_closed_merchants_change_nothing(state: MerchantState) -> None:
    refused(
        lambda: change_materials(replace(ACTIVE, state=state), None, "a", "b"),
        ErrorCode.MERCHANT_STATE_CONFLICT,
    )


# --- settlement accounts ------------------------------------------------------------------------


def binding(state: BindingState, failed: int = 0, binding_id: str = "msa_2") -> Binding:
    return Binding(binding_id, state, failed)


def test_a_new_account_is_verified_by_micro_deposit_then_confirmation() -> None:
    decision = bind_account(ACTIVE, None, None, None, "acct1")
    assert decision.create and decision.supersede is None
    sent = on_result(RequestKind.BIND, "r", ACTIVE, None, binding(BindingState.VERIFYING), OK, None)
    assert sent.binding is not None and sent.binding.state is BindingState.AWAITING_CONFIRMATION
    assert [e.type for e in sent.events] == ["SETTLEMENT_ACCOUNT_DEPOSIT_SENT"]
    confirming = confirm_amount(ACTIVE, sent.binding)
    assert confirming.state is BindingState.CONFIRMING
    verified = on_result(RequestKind.CONFIRM, "r", ACTIVE, None, confirming, OK, None)
    assert verified.binding is not None and verified.binding.state is BindingState.VERIFIED
    assert verified.merchant is not None and verified.merchant.binding_in_use == "msa_2"
    assert verified.replaced is None
    assert [e.type for e in verified.events] == ["SETTLEMENT_ACCOUNT_VERIFIED"]


def test_five_wrong_amounts_fail_the_binding() -> None:
    current = binding(BindingState.AWAITING_CONFIRMATION)
    keys = []
    for attempt in range(1, MAX_CONFIRMATIONS + 1):
        confirming = confirm_amount(ACTIVE, current)
        change = on_result(RequestKind.CONFIRM, "r", ACTIVE, None, confirming, NO, "mismatch")
        assert change.binding is not None
        current = change.binding
        keys += [e.key for e in change.events]
        assert current.failed_attempts == attempt
        if attempt < MAX_CONFIRMATIONS:
            assert current.state is BindingState.AWAITING_CONFIRMATION
            assert current.attempts_left == MAX_CONFIRMATIONS - attempt
    assert current.state is BindingState.FAILED and current.reason == TOO_MANY_WRONG_AMOUNTS
    assert keys == [f"MISMATCH:msa_2:{n}" for n in range(1, 5)] + ["ACCOUNT_FAILED:msa_2"]
    message = refused(lambda: confirm_amount(ACTIVE, current), ErrorCode.MERCHANT_STATE_CONFLICT)
    assert "FAILED" in message


def test_one_amount_at_a_time() -> None:
    message = refused(
        lambda: confirm_amount(ACTIVE, binding(BindingState.CONFIRMING)),
        ErrorCode.MERCHANT_STATE_CONFLICT,
    )
    assert "still being checked" in message
    refused(lambda: confirm_amount(ACTIVE, None), ErrorCode.MERCHANT_STATE_CONFLICT)
    refused(
        lambda: confirm_amount(ACTIVE, binding(BindingState.VERIFYING)),
        ErrorCode.MERCHANT_STATE_CONFLICT,
    )


def test_a_change_of_account_keeps_the_verified_one_in_use_until_the_new_is_verified() -> None:
    merchant = replace(ACTIVE, binding_in_use="msa_1")
    decision = bind_account(merchant, binding(BindingState.VERIFIED, 0, "msa_1"), "a", "a", "b")
    assert decision.create and decision.supersede is None
    failed = on_result(
        RequestKind.BIND, "r", merchant, None, binding(BindingState.VERIFYING), NO, "name"
    )
    assert failed.merchant is None  # msa_1 stays in use
    assert failed.binding is not None and failed.binding.state is BindingState.FAILED
    verified = on_result(
        RequestKind.CONFIRM, "r", merchant, None, binding(BindingState.CONFIRMING), OK, None
    )
    assert verified.merchant is not None and verified.merchant.binding_in_use == "msa_2"
    assert verified.replaced == "msa_1"


def test_asking_again_for_the_account_in_progress_or_in_use_changes_nothing() -> None:
    in_progress = binding(BindingState.AWAITING_CONFIRMATION)
    assert not bind_account(ACTIVE, in_progress, "b", None, "b").create
    merchant = replace(ACTIVE, binding_in_use="msa_1")
    assert not bind_account(
        merchant, binding(BindingState.VERIFIED, 0, "msa_1"), "a", "a", "a"
    ).create
    # Back to the account in use while another is being verified: that one is superseded.
    decision = bind_account(merchant, in_progress, "b", "a", "a")
    assert not decision.create and decision.supersede == "msa_2"
    # Another account while one is being verified: it supersedes that one.
    decision = bind_account(merchant, in_progress, "b", "a", "c")
    assert decision.create and decision.supersede == "msa_2"


def test_a_superseded_bindings_result_is_stale_without_an_alert() -> None:
    superseded = binding(BindingState.SUPERSEDED)
    change = on_result(RequestKind.CONFIRM, "r", ACTIVE, None, superseded, OK, None)
    assert change.stale and not change.alert and not change.events


def test_only_an_active_merchant_binds() -> None:
    refused(lambda: bind_account(PENDING, None, None, None, "a"), ErrorCode.MERCHANT_STATE_CONFLICT)


# --- close -------------------------------------------------------------------------------------


@pytest.mark.parametrize("buckets", [Buckets(1, 0, 0), Buckets(0, 1, 0), Buckets(0, 0, 1)])
def test_close_is_refused_while_any_bucket_holds_money(buckets: Buckets) -> None:
    message = refused(lambda: close(ACTIVE, buckets, 0), ErrorCode.MERCHANT_BALANCE_NOT_ZERO)
    assert "every bucket must be 0" in message


def test_close_is_refused_while_an_order_is_unsettled() -> None:
    message = refused(lambda: close(ACTIVE, EMPTY, 2), ErrorCode.MERCHANT_HAS_UNSETTLED_ORDERS)
    assert "2 order(s)" in message


def test_close_is_refused_unless_active_and_decided() -> None:
    refused(lambda: close(PENDING, EMPTY, 0), ErrorCode.MERCHANT_STATE_CONFLICT)
    reviewing = replace(ACTIVE, latest_version=2, version_pending=True)
    refused(lambda: close(reviewing, EMPTY, 0), ErrorCode.MERCHANT_STATE_CONFLICT)


def test_the_depository_confirms_the_close_or_refuses_it() -> None:
    closing = close(ACTIVE, EMPTY, 0)
    assert closing.state is MerchantState.CLOSING
    closed = on_result(RequestKind.CLOSE, "r9", closing, None, None, OK, None)
    assert closed.merchant is not None and closed.merchant.state is MerchantState.CLOSED
    assert [e.key for e in closed.events] == ["CLOSED"]
    kept = on_result(RequestKind.CLOSE, "r9", closing, None, None, NO, "member has a dispute")
    assert kept.merchant is not None and kept.merchant.state is MerchantState.ACTIVE
    assert kept.merchant.reason == "member has a dispute"
    assert [e.key for e in kept.events] == ["CLOSE_REFUSED:r9"]


def test_biz_codes_of_states() -> None:
    assert {s: (s.biz_code, s.http_status) for s in MerchantState} == {
        MerchantState.PENDING_REVIEW: ("PROCESSING", 202),
        MerchantState.ACTIVE: ("SUCCESS", 200),
        MerchantState.REJECTED: ("FAILED", 200),
        MerchantState.CLOSING: ("PROCESSING", 202),
        MerchantState.CLOSED: ("SUCCESS", 200),
    }
