"""What the bank says about one payout, from its signed callback or from a status query. Pure.

Shared by the gateway (which checks a result callback before publishing it) and the payment
worker (which settles payouts from it), so it lives in common.

The callback's ``biz_content`` (method ``bkfunds.payout.result.notify``) follows the bank's
conventions: snake_case strings, amounts as strings of fen, times ``yyyy-MM-dd HH:mm:ss`` in
GMT+8. Unknown keys are ignored (banks add fields); JSON null and "" mean absent, as in the
transfer notification.

The batch callback (``bkfunds.payout.results.notify``) carries ``{"results": [...]}``, each item
exactly a single callback's ``biz_content``. It is read all or nothing: one unreadable item
refuses the whole notification, so the bank sends it again whole and no result is half-taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.common.clock import parse_bank_time
from fundhub.common.money import MoneyError, parse_minor_units
from fundhub.payouts.bank import BankStatus

_ID_MAX = 64
_REASON_MAX = 256
_BIZ = "biz_content"
# At most this many results in one batch notification. A worst-case item (64-character ids, a
# 256-character reason in CJK) is about 1.1 KB on the wire, so 500 stay well under the gateway's
# 1 MiB body limit; and 500 amortise the notification's one RSA signature to almost nothing.
MAX_BATCH_RESULTS = 500


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


@dataclass(frozen=True)
class BatchResult:
    """One item of a batch notification: the result, and the item as the bank sent it (the
    gateway forwards the item itself, so the worker reads exactly what was verified)."""

    result: BankResult
    item: dict[str, Any]


def parse_bank_result(biz: Mapping[str, Any], where: str = _BIZ) -> BankResult:
    """Validate a payout result's ``biz_content`` (already decoded from its JSON string).

    PROCESSING is accepted although the bank only calls back with final states: it moves
    nothing, and refusing it would only make the bank retry it. ``finished_time`` is required
    for the final states. ``where`` prefixes the field names in refusals (a batch item's path).
    """
    bank_request_id = _required(biz, where, "bank_request_id", _ID_MAX)
    bank_txn_id = _required(biz, where, "bank_txn_id", _ID_MAX)
    status_text = _required(biz, where, "status", None)
    try:
        status = BankStatus(status_text)
    except ValueError:
        allowed = ", ".join(member.value for member in BankStatus)
        raise InvalidBankResult(f"{where}.status", f"not one of {allowed}") from None
    reason = _optional(biz, where, "reason", _REASON_MAX)
    amount_text = _required(biz, where, "amount", 16)
    try:
        amount = parse_minor_units(amount_text, max_digits=16)
    except MoneyError:
        amount = 0
    if amount <= 0:
        raise InvalidBankResult(f"{where}.amount", "not a positive integer amount of fen")
    finished_text = _optional(biz, where, "finished_time", 19)
    if finished_text is None and status is not BankStatus.PROCESSING:
        raise InvalidBankResult(f"{where}.finished_time", "missing")
    finished_time = None
    if finished_text is not None:
        try:
            finished_time = parse_bank_time(finished_text)
        except ValueError:
            raise InvalidBankResult(
                f"{where}.finished_time", "expected yyyy-MM-dd HH:mm:ss"
            ) from None
    return BankResult(
        status=status,
        bank_txn_id=bank_txn_id,
        reason=reason,
        amount=amount,
        bank_request_id=bank_request_id,
        finished_time=finished_time,
    )


def parse_bank_results(biz: Mapping[str, Any]) -> list[BatchResult]:
    """Validate a batch notification's ``biz_content`` (decoded): every item, or none.

    Refusals name the item and the field (``biz_content.results[3].amount: missing``). The same
    payId may appear twice (a duplicate copy gathered with the first): each copy is returned,
    and the consumer's inbox keeps one.
    """
    items = biz.get("results")
    where = f"{_BIZ}.results"
    if items is None:
        raise InvalidBankResult(where, "missing")
    if not isinstance(items, list):
        raise InvalidBankResult(where, "not a JSON array")
    if not items:
        raise InvalidBankResult(where, "empty")
    if len(items) > MAX_BATCH_RESULTS:
        raise InvalidBankResult(where, f"more than {MAX_BATCH_RESULTS} items")
    return [_batch_item(item, f"{where}[{index}]") for index, item in enumerate(items)]


def _batch_item(item: Any, where: str) -> BatchResult:
    if not isinstance(item, dict):
        raise InvalidBankResult(where, "not a JSON object")
    return BatchResult(result=parse_bank_result(item, where), item=item)


def _required(biz: Mapping[str, Any], where: str, key: str, max_len: int | None) -> str:
    value = _optional(biz, where, key, max_len)
    if value is None:
        raise InvalidBankResult(f"{where}.{key}", "missing")
    return value


def _optional(biz: Mapping[str, Any], where: str, key: str, max_len: int | None) -> str | None:
    value = biz.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidBankResult(f"{where}.{key}", "not a string")
    if max_len is not None and len(value) > max_len:
        raise InvalidBankResult(f"{where}.{key}", f"longer than {max_len} characters")
    return value
