"""What a source's status word means, and what the platform's own states mean, on one scale:
OK (the money moved), FAILED (it did not, or was undone), OTHER (not final). Pure.

A status mismatch is the two sides disagreeing on this scale; the words themselves differ by
source (WeChat Pay's ``SUCCESS``/``REFUND``/``REVOKED``, Alipay's 交易/退款, the bank's codes)
and are kept as written on the line.
"""

from __future__ import annotations

from enum import StrEnum

from fundhub.reconciliation.statement import LineKind, Source


class Outcome(StrEnum):
    OK = "OK"
    FAILED = "FAILED"
    OTHER = "OTHER"


_OK_WORDS = {
    LineKind.PAYMENT: frozenset(
        {"SUCCESS", "TRADE_SUCCESS", "TRADE_FINISHED", "交易", "交易成功", "支付成功", "成功"}
    ),
    LineKind.REFUND: frozenset({"REFUND", "SUCCESS", "REFUND_SUCCESS", "退款", "退款成功", "成功"}),
    LineKind.CREDIT: frozenset({"SUCCESS", "S", "00", "成功", "入账"}),
    LineKind.DEBIT: frozenset({"SUCCESS", "S", "00", "成功", "出账"}),
}
_FAILED_WORDS = frozenset(
    {
        "REVOKED",
        "CLOSED",
        "TRADE_CLOSED",
        "FAILED",
        "FAIL",
        "F",
        "REVERSED",
        "ABNORMAL",
        "撤销",
        "关闭",
        "失败",
        "冲正",
        "退款失败",
    }
)


def line_outcome(source: Source, kind: LineKind, status: str) -> Outcome:
    """The outcome a statement line reports. ``source`` is part of the contract even where the
    words agree across sources today: a source may use a word another uses otherwise."""
    del source
    word = status.strip().upper()
    if word in _OK_WORDS[kind]:
        return Outcome.OK
    if word in _FAILED_WORDS:
        return Outcome.FAILED
    return Outcome.OTHER


# The platform's states, per kind of record (the SQL reads these through ``platform_case``).
ORDER_STATES = {"PAID": Outcome.OK, "CLOSED": Outcome.FAILED, "FAILED": Outcome.FAILED}
REFUND_STATES = {"SUCCESS": Outcome.OK, "CLOSED": Outcome.FAILED, "FAILED": Outcome.FAILED}
TRANSFER_STATES = {
    "AVAILABLE": Outcome.OK,
    "FROZEN": Outcome.OK,
    "DEDUCTED": Outcome.OK,
    "REVERSED": Outcome.FAILED,
}
# A RETURNED payout did leave the account (the money came back later, as its own credit).
PAYOUT_STATES = {"SUCCESS": Outcome.OK, "RETURNED": Outcome.OK, "FAILED": Outcome.FAILED}


def platform_case(column: str, states: dict[str, Outcome]) -> str:
    """A SQL ``CASE`` giving the outcome of a state column (``OTHER`` for the rest). The words
    are this module's constants, never input."""
    arms = " ".join(f"WHEN '{state}' THEN '{outcome}'" for state, outcome in states.items())
    return f"(CASE {column} {arms} ELSE '{Outcome.OTHER}' END)"
