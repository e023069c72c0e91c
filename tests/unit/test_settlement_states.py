"""A settlement moves forward only, whatever the depository reports and in whatever order; its
one entry moves each receiver's pending to available, balanced."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from fundhub.ledger.rules import (
    Balance,
    Bucket,
    InsufficientFunds,
    apply_entry,
    new_entry_id,
    totals_by_currency,
)
from fundhub.settlement.amounts import ReceiverAmount
from fundhub.settlement.depository import (
    MAX_SPLIT_RESULTS,
    InvalidSplitResult,
    SplitReport,
    SplitStatus,
    parse_split_result,
    parse_split_results,
)
from fundhub.settlement.states import (
    SPLIT_REFUSED,
    Settlement,
    SettlementState,
    refused_request,
    report,
    settle_entry,
)

SID = "STL202603010000000001"
RECEIVERS = (ReceiverAmount("mch_a", "acct-a", 4800), ReceiverAmount("mch_b", "acct-b", 2400))


def settlement(state: SettlementState = SettlementState.PENDING, **changes: object) -> Settlement:
    base = Settlement(SID, "ORD-1", "CNY", RECEIVERS, state)
    return replace(base, **changes)  # type: ignore[arg-type]


def rep(status: SplitStatus, **changes: object) -> SplitReport:
    base = SplitReport(SID, status, bank_split_id="BS1", amount=7200)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_success_settles_and_moves_pending_to_available_per_receiver() -> None:
    moved = report(settlement(SettlementState.PROCESSING), rep(SplitStatus.SUCCESS), new_entry_id())
    assert moved.outcome == "applied"
    assert moved.settlement is not None and moved.settlement.state is SettlementState.SETTLED
    entry = moved.entry
    assert entry is not None and entry.ref_id == SID and entry.kind == "settlement"
    assert totals_by_currency(entry.postings) == {"CNY": 0}
    balances = {
        "acct-a": Balance("acct-a", "CNY", available=10, pending=5000),
        "acct-b": Balance("acct-b", "CNY", pending=2400),
    }
    after = apply_entry(balances, entry)
    assert (after["acct-a"].available, after["acct-a"].pending) == (4810, 200)
    assert (after["acct-b"].available, after["acct-b"].pending) == (2400, 0)
    # Nothing left the accounts: a settlement changes buckets, not totals.
    assert all(after[a].total == balances[a].total for a in balances)


def test_a_settlement_never_takes_pending_that_is_not_there() -> None:
    entry = settle_entry(settlement(), new_entry_id())
    with pytest.raises(InsufficientFunds) as caught:
        apply_entry({"acct-a": Balance("acct-a", "CNY", pending=4799)}, entry)
    assert caught.value.bucket is Bucket.PENDING


def test_failed_refuses_with_the_banks_reason_and_moves_nothing() -> None:
    moved = report(
        settlement(SettlementState.PROCESSING),
        rep(SplitStatus.FAILED, reason="receiver SPLITFAIL Ltd: not eligible"),
        new_entry_id(),
    )
    assert moved.entry is None and moved.settlement is not None
    assert moved.settlement.state is SettlementState.REFUSED
    assert moved.settlement.error_code == SPLIT_REFUSED == "E043_SPLIT_REFUSED"
    assert moved.settlement.message == "receiver SPLITFAIL Ltd: not eligible"


def test_the_answer_to_the_request_moves_pending_to_processing_once() -> None:
    first = report(settlement(), rep(SplitStatus.PROCESSING, amount=None), new_entry_id())
    assert first.settlement is not None
    assert first.settlement.state is SettlementState.PROCESSING
    assert first.settlement.bank_split_id == "BS1"
    again = report(first.settlement, rep(SplitStatus.PROCESSING), new_entry_id())
    assert again.settlement is None and again.outcome == "stale"


def test_a_notification_overtaking_the_answer_settles_a_pending_settlement() -> None:
    moved = report(settlement(), rep(SplitStatus.SUCCESS), new_entry_id())
    assert moved.settlement is not None and moved.settlement.state is SettlementState.SETTLED
    assert moved.entry is not None


@pytest.mark.parametrize(
    ("state", "status", "alert"),
    [
        (SettlementState.SETTLED, SplitStatus.SUCCESS, False),  # duplicate
        (SettlementState.REFUSED, SplitStatus.FAILED, False),  # duplicate
        (SettlementState.SETTLED, SplitStatus.PROCESSING, False),  # late
        (SettlementState.REFUSED, SplitStatus.PROCESSING, False),  # late
        (SettlementState.SETTLED, SplitStatus.FAILED, True),  # contradiction
        (SettlementState.REFUSED, SplitStatus.SUCCESS, True),  # contradiction
    ],
)
def test_a_final_state_never_moves(
    state: SettlementState, status: SplitStatus, alert: bool
) -> None:
    moved = report(settlement(state, bank_split_id="BS1"), rep(status), new_entry_id())
    assert (moved.settlement, moved.entry, moved.outcome, moved.alert) == (
        None,
        None,
        "stale",
        alert,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"split_request_id": "STL202603010000000002"},
        {"amount": 7199},
        {"bank_split_id": "BS-other"},
    ],
)
def test_a_report_about_something_else_moves_nothing_and_alerts(changes: dict[str, object]) -> None:
    moved = report(
        settlement(SettlementState.PROCESSING, bank_split_id="BS1"),
        rep(SplitStatus.SUCCESS, **changes),
        new_entry_id(),
    )
    assert (moved.settlement, moved.entry, moved.outcome, moved.alert) == (
        None,
        None,
        "rejected",
        True,
    )


def test_a_refused_request_refuses_only_a_pending_settlement() -> None:
    moved = refused_request(settlement(), "receivers: unknown member")
    assert moved.settlement is not None and moved.settlement.state is SettlementState.REFUSED
    assert moved.settlement.message == "receivers: unknown member"
    late = refused_request(settlement(SettlementState.PROCESSING), "late")
    assert late.settlement is None and late.outcome == "stale"


def test_any_order_of_reports_posts_at_most_one_entry() -> None:
    """Every permutation of a report stream with duplicates ends in one state, posted once."""
    stream = [
        rep(SplitStatus.PROCESSING, amount=None),
        rep(SplitStatus.SUCCESS),
        rep(SplitStatus.SUCCESS),
        rep(SplitStatus.PROCESSING),
    ]
    for order in itertools.permutations(stream):
        current, entries = settlement(), 0
        for item in order:
            moved = report(current, item, new_entry_id())
            if moved.settlement is not None:
                current = moved.settlement
            entries += moved.entry is not None
        assert current.state is SettlementState.SETTLED and entries == 1


def test_biz_codes() -> None:
    assert [s.biz_code for s in SettlementState] == [
        "PROCESSING",
        "PROCESSING",
        "SUCCESS",
        "FAILED",
    ]
    assert [s.is_final for s in SettlementState] == [False, False, True, True]


# --- the signed split result's biz_content ---------------------------------------------------

BIZ = {
    "split_request_id": SID,
    "bank_split_id": "BS1",
    "order_no": "ORD-1",
    "status": "SUCCESS",
    "reason": "",
    "amount": "7200",
    "finished_time": "2026-03-02 02:00:05",
}


def test_a_split_result_is_read() -> None:
    parsed = parse_split_result(BIZ)
    assert parsed.status is SplitStatus.SUCCESS and parsed.amount == 7200
    assert parsed.reason is None and parsed.bank_split_id == "BS1"
    assert parsed.finished_time is not None and parsed.finished_time.hour == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"split_request_id": None}, "split_request_id"),
        ({"split_request_id": "a b"}, "split_request_id"),
        ({"status": "DONE"}, "status"),
        ({"amount": "12.00"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": 7200}, "amount"),
        ({"finished_time": None}, "finished_time"),
        ({"finished_time": "2026-03-02T02:00:05"}, "finished_time"),
        ({"reason": "x" * 257}, "reason"),
    ],
)
def test_an_unreadable_split_result_names_its_field(changes: dict[str, object], field: str) -> None:
    biz = {**BIZ, **changes}
    with pytest.raises(InvalidSplitResult) as caught:
        parse_split_result({k: v for k, v in biz.items() if v is not None})
    assert caught.value.field == f"biz_content.{field}"


def test_a_batch_of_split_results_is_read_whole_or_refused_naming_the_item() -> None:
    other = {**BIZ, "split_request_id": "STL-2", "status": "FAILED", "reason": "no"}
    parsed = parse_split_results({"results": [BIZ, other]})
    assert [p.report.split_request_id for p in parsed] == [SID, "STL-2"]
    assert parsed[1].report.status is SplitStatus.FAILED and parsed[1].item is other
    for biz, field in (
        ({"results": []}, "biz_content.results"),
        ({"results": "x"}, "biz_content.results"),
        ({"results": [BIZ] * (MAX_SPLIT_RESULTS + 1)}, "biz_content.results"),
        ({"results": [BIZ, "x"]}, "biz_content.results[1]"),
        ({"results": [BIZ, {**BIZ, "amount": "0"}]}, "biz_content.results[1].amount"),
    ):
        with pytest.raises(InvalidSplitResult) as caught:
            parse_split_results(biz)
        assert caught.value.field == field


def test_random_report_streams_keep_money_once() -> None:
    rng = random.Random(7)
    statuses = [SplitStatus.PROCESSING, SplitStatus.SUCCESS, SplitStatus.FAILED]
    for _ in range(500):
        current, entries = settlement(), 0
        first_final: SplitStatus | None = None
        for _ in range(rng.randint(1, 6)):
            status = rng.choice(statuses)
            moved = report(current, rep(status), new_entry_id())
            if moved.settlement is not None:
                current = moved.settlement
                if current.state.is_final and first_final is None:
                    first_final = status
            entries += moved.entry is not None
        assert entries == (1 if first_final is SplitStatus.SUCCESS else 0)
