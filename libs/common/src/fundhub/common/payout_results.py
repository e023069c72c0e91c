"""What the bank says about one payout, from its signed callback or from a status query. Pure.

Shared by the gateway (which checks a result callback before publishing it) and the payment
worker (which settles payouts from it), so it lives in common.

The callback's ``biz_content`` (method ``bkfunds.payout.result.notify``) follows the bank's
conventions: snake_case strings, amounts as strings of fen, times ``yyyy-MM-dd HH:mm:ss`` in
GMT+8. Unknown keys are ignored (banks add fields); JSON null and "" mean absent, as in the
transfer notification.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.common.bank_payouts import BankStatus
from fundhub.common.clock import parse_bank_time
from fundhub.common.money import MoneyError, parse_minor_units

_ID_MAX = 64
_REASON_MAX = 256


class InvalidBankResult(ValueError):
    """A payout result we cannot read; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class BankResult:
    """One report of the bank on a payout (``bank_request_id`` is our payId).

    ``amount`` is None when the report does not carry one (a status query answers without it);
    a callback always carries it, and a mismatch with the payout is refused by ``settle``.
    """

    status: BankStatus
    bank_txn_id: str | None
    reason: str | None = None
    amount: int | None = None
    bank_request_id: str | None = None
    finished_time: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", BankStatus(self.status))
        if self.amount is not None and (
            isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0
        ):
            raise ValueError("amount must be a positive integer of minor units")


def parse_bank_result(biz: Mapping[str, Any]) -> BankResult:
    """Validate a payout result's ``biz_content`` (already decoded from its JSON string).

    PROCESSING is accepted although the bank only calls back with final states: it moves
    nothing, and refusing it would only make the bank retry it. ``finished_time`` is required
    for the final states.
    """
    bank_request_id = _required(biz, "bank_request_id", _ID_MAX)
    bank_txn_id = _required(biz, "bank_txn_id", _ID_MAX)
    status_text = _required(biz, "status", None)
    try:
        status = BankStatus(status_text)
    except ValueError:
        allowed = ", ".join(member.value for member in BankStatus)
        raise InvalidBankResult(_name("status"), f"not one of {allowed}") from None
    reason = _optional(biz, "reason", _REASON_MAX)
    amount_text = _required(biz, "amount", 16)
    try:
        amount = parse_minor_units(amount_text, max_digits=16)
    except MoneyError:
        amount = 0
    if amount <= 0:
        raise InvalidBankResult(_name("amount"), "not a positive integer amount of fen")
    finished_text = _optional(biz, "finished_time", 19)
    if finished_text is None and status is not BankStatus.PROCESSING:
        raise InvalidBankResult(_name("finished_time"), "missing")
    finished_time = None
    if finished_text is not None:
        try:
            finished_time = parse_bank_time(finished_text)
        except ValueError:
            raise InvalidBankResult(
                _name("finished_time"), "expected yyyy-MM-dd HH:mm:ss"
            ) from None
    return BankResult(
        status=status,
        bank_txn_id=bank_txn_id,
        reason=reason,
        amount=amount,
        bank_request_id=bank_request_id,
        finished_time=finished_time,
    )


def _name(key: str) -> str:
    return f"biz_content.{key}"


def _required(biz: Mapping[str, Any], key: str, max_len: int | None) -> str:
    value = _optional(biz, key, max_len)
    if value is None:
        raise InvalidBankResult(_name(key), "missing")
    return value


def _optional(biz: Mapping[str, Any], key: str, max_len: int | None) -> str | None:
    value = biz.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidBankResult(_name(key), "not a string")
    if max_len is not None and len(value) > max_len:
        raise InvalidBankResult(_name(key), f"longer than {max_len} characters")
    return value
