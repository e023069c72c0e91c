"""The reconciliation context's pure rules: classes and their wire names, what status words
mean, the channels' fee, the business day and its midnight margin, the discrepancy's state
machine under four eyes, the daily report's escaping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fundhub.reconciliation.business_day import business_day_of, day_window
from fundhub.reconciliation.classes import DISCREPANCY_CLASSES, MatchClass, by_wire, per_class
from fundhub.reconciliation.discrepancy_states import (
    Action,
    Adjustment,
    InvalidAction,
    OwnApproval,
    State,
    StateConflict,
    check_reason,
    next_state,
)
from fundhub.reconciliation.fees import channel_fee, fee_sql
from fundhub.reconciliation.outcomes import ORDER_STATES, Outcome, line_outcome, platform_case
from fundhub.reconciliation.report import csv_report, html_report
from fundhub.reconciliation.statement import LineKind, Source


def test_wire_names_are_the_issues_camel_case() -> None:
    assert [c.wire for c in MatchClass] == [
        "matched",
        "missingOnPlatform",
        "missingAtChannel",
        "amountMismatch",
        "statusMismatch",
        "duplicate",
        "feeDifference",
    ]
    assert by_wire("feeDifference") is MatchClass.FEE_DIFFERENCE
    assert MatchClass.MATCHED not in DISCREPANCY_CLASSES
    assert per_class({"duplicate": 2})["duplicate"] == 2
    assert per_class({})["missingOnPlatform"] == 0
    with pytest.raises(KeyError):
        by_wire("missing_on_platform")


@pytest.mark.parametrize(
    ("kind", "word", "outcome"),
    [
        (LineKind.PAYMENT, "SUCCESS", Outcome.OK),
        (LineKind.PAYMENT, "交易", Outcome.OK),
        (LineKind.PAYMENT, "REVOKED", Outcome.FAILED),
        (LineKind.PAYMENT, "REFUND", Outcome.OTHER),
        (LineKind.REFUND, "REFUND", Outcome.OK),
        (LineKind.REFUND, "退款", Outcome.OK),
        (LineKind.CREDIT, " success ", Outcome.OK),
        (LineKind.DEBIT, "冲正", Outcome.FAILED),
        (LineKind.DEBIT, "PENDING", Outcome.OTHER),
    ],
)
def test_status_words_mean_one_outcome(kind: LineKind, word: str, outcome: Outcome) -> None:
    assert line_outcome(Source.WECHATPAY, kind, word) is outcome


def test_platform_states_read_in_sql_from_constants_only() -> None:
    case = platform_case("o.state", ORDER_STATES)
    assert case.startswith("(CASE o.state WHEN 'PAID' THEN 'OK'")
    assert case.endswith("ELSE 'OTHER' END)")


def test_the_fee_rounds_half_up_in_python_and_in_sql_alike() -> None:
    assert channel_fee(10_000, 6_000) == 60
    assert channel_fee(83, 6_000) == 0  # 0.498
    assert channel_fee(84, 6_000) == 1  # 0.504
    assert channel_fee(250, 2_000) == 1  # 0.5 exactly: half up
    assert fee_sql("a", 6_000) == "((a * 6000 + 500000) / 1000000)"
    with pytest.raises(ValueError):
        channel_fee(-1, 6_000)
    with pytest.raises(ValueError):
        fee_sql("a", "6000")  # type: ignore[arg-type]


def test_the_business_day_is_china_time_and_its_margin_ends_it() -> None:
    window = day_window(date(2026, 3, 1), timedelta(minutes=5))
    assert window.start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 1, 16, tzinfo=UTC)
    assert window.carry_from == datetime(2026, 3, 1, 15, 55, tzinfo=UTC)
    assert window.next_day == date(2026, 3, 2)
    assert business_day_of(datetime(2026, 3, 1, 16, 0, 1, tzinfo=UTC)) == date(2026, 3, 2)
    with pytest.raises(ValueError):
        day_window(date(2026, 3, 1), timedelta(hours=3))
    with pytest.raises(ValueError):
        business_day_of(datetime(2026, 3, 1))


def test_an_adjustment_is_proposed_by_one_and_approved_by_another() -> None:
    assert next_state(State.OPEN, Action.PROPOSE, "alice") is State.ADJUSTMENT_PROPOSED
    assert (
        next_state(State.ADJUSTMENT_PROPOSED, Action.APPROVE, "bob", proposed_by="alice")
        is State.RESOLVED
    )
    with pytest.raises(OwnApproval):
        next_state(State.ADJUSTMENT_PROPOSED, Action.APPROVE, "alice", proposed_by="alice")
    with pytest.raises(OwnApproval):
        next_state(State.ADJUSTMENT_PROPOSED, Action.APPROVE, "bob", proposed_by=None)
    with pytest.raises(StateConflict):
        next_state(State.OPEN, Action.APPROVE, "bob", proposed_by="alice")


@pytest.mark.parametrize(
    ("state", "action", "after"),
    [
        (State.OPEN, Action.CARRY_OVER, State.CARRIED_OVER),
        (State.OPEN, Action.WRITE_OFF, State.WRITTEN_OFF),
        (State.CARRIED_OVER, Action.WRITE_OFF, State.WRITTEN_OFF),
        (State.CARRIED_OVER, Action.REOPEN, State.OPEN),
        (State.WRITTEN_OFF, Action.REOPEN, State.OPEN),
        (State.ADJUSTMENT_PROPOSED, Action.REOPEN, State.OPEN),
    ],
)
def test_the_other_actions(state: State, action: Action, after: State) -> None:
    assert next_state(state, action, "carol") is after


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (State.RESOLVED, Action.REOPEN),
        (State.RESOLVED, Action.WRITE_OFF),
        (State.OPEN, Action.REOPEN),
        (State.WRITTEN_OFF, Action.CARRY_OVER),
        (State.ADJUSTMENT_PROPOSED, Action.PROPOSE),
    ],
)
def test_what_a_state_refuses(state: State, action: Action) -> None:
    with pytest.raises(StateConflict):
        next_state(state, action, "carol")


def test_reasons_and_adjustments_are_bounded() -> None:
    assert check_reason("  typo in the bill ", required=True) == "typo in the bill"
    with pytest.raises(InvalidAction):
        check_reason(" ", required=True)
    with pytest.raises(InvalidAction):
        check_reason("x" * 501, required=False)
    with pytest.raises(InvalidAction):
        check_reason("a\nb", required=False)
    with pytest.raises(InvalidAction):
        next_state(State.OPEN, Action.CARRY_OVER, " ")
    assert Adjustment("6222020000000001", -5).amount_fen == -5
    for bad in (0, True, 10**16):
        with pytest.raises(InvalidAction):
            Adjustment("acct", bad)
    with pytest.raises(InvalidAction):
        Adjustment("acct; drop", 1)


def test_the_report_escapes_what_came_from_outside() -> None:
    run = {
        "runId": "RCN1",
        "source": "wechatpay",
        "date": "2026-03-01",
        "counts": per_class({"duplicate": 1}),
        "sums": per_class({"duplicate": 100}),
    }
    rows = [
        {"discrepancyId": "D1", "class": "duplicate", "reference": "<script>", "account": "=1+1"}
    ]
    page = html_report(run, rows)
    assert "<script>" not in page and "&lt;script&gt;" in page
    text = csv_report(run, rows)
    assert "duplicate,1,100" in text
    assert "'=1+1" in text
    assert "\n,,,,,,-5," in csv_report(run, [{"statementFen": -5}])  # numbers stay numbers


def test_the_reconciler_fetches_the_previous_day_at_its_time_in_china() -> None:
    from fundhub.reconciliation.fetch_schedule import (
        due_day,
        fetch_moment,
        next_fetch,
        parse_fetch_at,
    )

    at = parse_fetch_at("10:30")
    # 10:29 on 2 March in China (02:29 UTC): 1 March is not due yet, 28 February is.
    before = datetime(2026, 3, 2, 2, 29, tzinfo=UTC)
    assert due_day(before, at) == date(2026, 2, 28)
    assert next_fetch(before, at) == (datetime(2026, 3, 2, 2, 30, tzinfo=UTC), date(2026, 3, 1))
    after = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    assert due_day(after, at) == date(2026, 3, 1)
    assert next_fetch(after, at)[1] == date(2026, 3, 2)
    # 23:00 UTC on 1 March is 07:00 on 2 March in China
    assert due_day(datetime(2026, 3, 1, 23, tzinfo=UTC), at) == date(2026, 2, 28)
    assert fetch_moment(date(2026, 3, 1), at) == datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    for bad in ("24:00", "9:30", "10:3"):
        with pytest.raises(ValueError):
            parse_fetch_at(bad)
