"""Talking to the bank about payouts: the port, its domain types and the protocol's names. No I/O.

The payment worker codes against ``BankPayoutAdapter`` only, so a real bank's adapter plugs in
beside ``bank_http.HttpBankAdapter`` (which speaks the simulator's protocol, ``bank/v1``). The
protocol's names live here too, so the simulator (the bank side) and the worker (the client side)
agree.

The one rule every adapter keeps: a payout is sent under its ``bank_request_id`` (our payId)
and only ever under it, so a retry the bank already saw is deduplicated by the bank instead of
paying twice. An answer that never came is not a failure: the caller asks again (``query``).
That holds for a batch (``submit_many``) too: each order in it is the same order it would be
alone, so a batch retried, or an order of it sent again alone, is deduplicated all the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from fundhub.bank_client.refusal import Refused
from fundhub.common.money import MoneyError, normalize_currency

TRANSFERS_PATH = "/bank/v1/transfers"
# Many transfers in one request: {"transfers": [<transfer body>, ...]} with 1 to MAX_BATCH
# items, answered 200 {"results": [...]} in the same order, each item a transfer answer or a
# refusal of that order alone, {"bank_request_id", "status": REFUSED, "code": 400|409, "error"}.
BATCH_PATH = TRANSFERS_PATH + "/batch"
MAX_BATCH = 200
REFUSED = "REFUSED"
# The signed notification the bank sends to ``notify_url`` when a payout's result is known.
RESULT_METHOD = "bkfunds.payout.result.notify"
# The same, for many payouts at once: biz_content is {"results": [<a RESULT_METHOD biz>, ...]}
# (1 to MAX_BATCH_RESULTS items, in payout_results), accepted or refused whole.
RESULTS_METHOD = "bkfunds.payout.results.notify"
NOT_FOUND = "NOT_FOUND"
# Reasons the bank gives for a bad payee account all start with this word; the worker maps
# them to E016_PAYEE_INVALID and every other refusal to E015_BANK_REJECTED.
PAYEE_REASON_PREFIX = "payee "

_ANSWER_LIMIT = 200
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BankStatus(StrEnum):
    """Where the bank says a payout is. RETURNED: paid, then sent back by the payee's bank."""

    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETURNED = "RETURNED"


# How a bank's failure reason names the payee's side ("payee account closed", "收款账户不存在").
_PAYEE_MARKERS = (PAYEE_REASON_PREFIX.strip(), "收款")


def payee_invalid(reason: str | None) -> bool:
    """Whether the bank's failure reason blames the payee account: E016, not E015."""
    text = (reason or "").casefold()
    return any(marker in text for marker in _PAYEE_MARKERS)


@dataclass(frozen=True, slots=True)
class PayoutOrder:
    """What we ask the bank to pay; ``amount`` in minor units, ``currency`` ISO 4217."""

    bank_request_id: str
    payer_account: str
    amount: int
    currency: str
    payee_account_no: str
    payee_account_name: str
    payee_bank_name: str
    notify_url: str
    purpose: str | None = None

    def __post_init__(self) -> None:
        if not _REQUEST_ID.fullmatch(self.bank_request_id):
            raise ValueError("bank_request_id: 1 to 64 of [A-Za-z0-9._:-]")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError("amount: must be a positive integer of minor units")
        try:
            iso = normalize_currency(self.currency)
        except MoneyError as exc:
            raise ValueError(f"currency: {exc}") from exc
        if iso != self.currency:
            raise ValueError(f"currency: give the ISO 4217 code ({iso})")
        for name in ("payer_account", "payee_account_no", "payee_account_name", "payee_bank_name"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if not self.notify_url.startswith(("http://", "https://")):
            raise ValueError("notify_url: must be an http(s) URL")

    def to_wire(self) -> dict[str, str]:
        """The transfer request body: snake_case strings, the amount as a string of fen."""
        body = {
            "bank_request_id": self.bank_request_id,
            "payer_account": self.payer_account,
            "amount": str(self.amount),
            "currency": self.currency,
            "payee_account_no": self.payee_account_no,
            "payee_account_name": self.payee_account_name,
            "payee_bank_name": self.payee_bank_name,
            "notify_url": self.notify_url,
        }
        if self.purpose:
            body["purpose"] = self.purpose
        return body


@dataclass(frozen=True, slots=True)
class BankAnswer:
    """The bank's word on one payout: its status, its own transaction id, and why (failures)."""

    status: BankStatus
    bank_txn_id: str | None
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status is not BankStatus.PROCESSING


class BankError(Exception):
    """Anything that keeps an adapter from giving a ``BankAnswer``."""


class BankUnavailable(BankError):
    """No usable answer after the retries: timeouts, 5xx, refused or dropped connections.

    The bank may or may not have the payout: ask again later with ``query`` (or resubmit the
    same order, which the bank deduplicates); never treat this as a failed payout.
    """


class BankRequestRefused(BankError, Refused):
    """The bank refused the request itself (4xx): malformed, or the id reused with other data.

    Not retried, since sending the same bytes again gets the same refusal. A 400 means the
    bank made no transfer from this request; after a 409 the id names another transfer, so
    ``query`` tells what happened to it.
    """

    reason_chars = _ANSWER_LIMIT


class BankPayoutAdapter(Protocol):
    """A bank that pays out. Implementations retry transient failures themselves."""

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        """Send the order (idempotent by ``order.bank_request_id``) and return the bank's answer.

        Raises ``BankUnavailable`` when no answer came, ``BankRequestRefused`` on a refusal.
        """
        ...

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        """Send the orders in as few requests as the bank takes; one outcome per order, in order.

        Each outcome is what ``submit`` would have returned or raised for that order alone, so
        one bad order costs only itself. Raises ``BankUnavailable`` when a request got no usable
        answer (the bank may hold any of its orders: ``query`` them), and ``BankRequestRefused``
        when the bank refused a request as a whole (a malformed batch, not a verdict on any one
        order, which sent alone may well be taken). Either way no order has an outcome here.
        """
        ...

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        """The payout's current state; None only when the bank says it never received it."""
        ...


def parse_answer(body: Any, bank_request_id: str) -> BankAnswer:
    """Check a transfer answer's shape; ValueError names what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    if body.get("bank_request_id") != bank_request_id:
        raise ValueError("answer is about another bank_request_id")
    try:
        status = BankStatus(str(body.get("status")))
    except ValueError:
        raise ValueError(f"unknown status {str(body.get('status'))[:40]!r}") from None
    txn_id = body.get("bank_txn_id")
    if not isinstance(txn_id, str) or not 0 < len(txn_id) <= 64:
        raise ValueError("bank_txn_id: missing or not a string of 1 to 64 characters")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason: not a string")
    return BankAnswer(status=status, bank_txn_id=txn_id, reason=reason or None)


def parse_batch_answer(
    body: Any, bank_request_ids: Sequence[str]
) -> list[BankAnswer | BankRequestRefused]:
    """Check a batch answer: exactly one item per sent order, in the order sent, each a transfer
    answer or a refusal of that order. Anything else (an item missing, extra, about another id)
    makes the whole answer unusable, since the items could no longer be told apart safely;
    ValueError names what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    results = body.get("results")
    if not isinstance(results, list):
        raise ValueError("results: missing or not a list")
    if len(results) != len(bank_request_ids):
        raise ValueError(f"results: {len(results)} items for {len(bank_request_ids)} orders")
    outcomes: list[BankAnswer | BankRequestRefused] = []
    for index, (item, bank_request_id) in enumerate(zip(results, bank_request_ids, strict=True)):
        try:
            outcomes.append(_batch_item(item, bank_request_id))
        except ValueError as exc:
            raise ValueError(f"results[{index}]: {exc}") from None
    return outcomes


def _batch_item(item: Any, bank_request_id: str) -> BankAnswer | BankRequestRefused:
    if not isinstance(item, Mapping) or item.get("status") != REFUSED:
        return parse_answer(item, bank_request_id)
    if item.get("bank_request_id") != bank_request_id:
        raise ValueError("answer is about another bank_request_id")
    code = item.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 499:
        raise ValueError("code: a refusal's code must be a 4xx status")
    return BankRequestRefused.from_answer(code, item, "")
