"""Registering split instructions with the depository bank: the port, its types, the protocol's
names, and the reading of its signed split results. No I/O.

The scheduler codes against ``DepositoryPort`` only; ``depository_http.HttpDepository`` speaks
the simulator's protocol (``depository/v1``), and a real bank's adapter would sit beside it.
The simulator (the bank side) imports the names from here, so both sides agree.

As for payouts, an instruction is sent under one id, ``split_request_id`` (our settlementId),
and only ever under it: a retry the bank has seen is deduplicated by the bank. The bank takes
the instruction synchronously and completes it asynchronously: the result comes as a signed
notification to ``/callbacks/bank`` (``SPLIT_RESULT_METHOD``, or ``SPLIT_RESULTS_METHOD`` for
many at once, one signature for all), or by a status query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from fundhub.bank_client.refusal import Refused
from fundhub.common.clock import parse_bank_time
from fundhub.common.money import MoneyError, normalize_currency, parse_minor_units

SPLITS_PATH = "/depository/v1/splits"
# Many instructions in one request: {"splits": [<instruction>, ...]}, 1 to MAX_BATCH_SPLITS,
# answered {"results": [...]} item by item in the order sent (an answer, or a refusal:
# {"status": "REFUSED", "code": 400 or 409, "error": ...}), as payouts' transfers/batch is.
SPLITS_BATCH_PATH = SPLITS_PATH + "/batch"
MAX_BATCH_SPLITS = 100
SPLIT_RESULT_METHOD = "bkfunds.split.result.notify"
# Many instructions' results in one notification, as the bank reports payouts: ``biz_content``
# = ``{"results": [<split result>, ...]}``, 1 to MAX_SPLIT_RESULTS, accepted or refused whole.
SPLIT_RESULTS_METHOD = "bkfunds.split.results.notify"
MAX_SPLIT_RESULTS = 200  # long refusal reasons included, well inside the gateway's body limit
NOT_FOUND = "NOT_FOUND"
REFUSED = "REFUSED"
# Like WeChat Pay's profit sharing: at most 50 receivers in one instruction (an order has
# at most 50 receivers, so one instruction always fits).
MAX_RECEIVERS = 50

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ID_MAX = 64
_REASON_MAX = 256
_BIZ = "biz_content"


class SplitStatus(StrEnum):
    """Where the bank says an instruction is: taken and working, done, or refused."""

    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class SplitReceiver:
    """One receiver as the depository knows it: its member (our merchantId), its name and
    what it receives."""

    member_id: str
    member_name: str
    amount: int

    def to_wire(self) -> dict[str, str]:
        return {
            "member_id": self.member_id,
            "member_name": self.member_name,
            "amount": str(self.amount),
        }


@dataclass(frozen=True, slots=True)
class SplitInstruction:
    """An order's split, as registered with the depository: who receives what of it."""

    split_request_id: str
    order_no: str
    currency: str
    receivers: tuple[SplitReceiver, ...]
    notify_url: str

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.split_request_id):
            raise ValueError("split_request_id: 1 to 64 of [A-Za-z0-9._:-]")
        if not 0 < len(self.order_no) <= _ID_MAX:
            raise ValueError("order_no: 1 to 64 characters")
        if normalize_currency(self.currency) != self.currency:
            raise ValueError("currency: give the ISO 4217 code")
        if not 0 < len(self.receivers) <= MAX_RECEIVERS:
            raise ValueError(f"receivers: 1 to {MAX_RECEIVERS}")
        for receiver in self.receivers:
            amount = receiver.amount
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise ValueError("receivers: every amount a positive integer of minor units")
            if not receiver.member_id or not receiver.member_name:
                raise ValueError("receivers: a member id and name each")
        if not self.notify_url.startswith(("http://", "https://")):
            raise ValueError("notify_url: must be an http(s) URL")

    @property
    def amount(self) -> int:
        return sum(r.amount for r in self.receivers)

    def to_wire(self) -> dict[str, Any]:
        """Snake_case, amounts as strings of fen, like the bank's other requests."""
        return {
            "split_request_id": self.split_request_id,
            "order_no": self.order_no,
            "currency": self.currency,
            "amount": str(self.amount),
            "receivers": [r.to_wire() for r in self.receivers],
            "notify_url": self.notify_url,
        }


@dataclass(frozen=True, slots=True)
class SplitReport:
    """The bank's word on one instruction, from its answer, a status query or a notification.

    ``amount`` (the instruction's total) is None when the report does not carry it (an answer
    to the request); a notification always carries it, and a mismatch moves nothing.
    """

    split_request_id: str
    status: SplitStatus
    bank_split_id: str | None = None
    reason: str | None = None
    amount: int | None = None
    finished_time: datetime | None = None


class DepositoryError(Exception):
    """Anything that keeps an adapter from giving a ``SplitReport``."""


class DepositoryUnavailable(DepositoryError):
    """No usable answer after the retries: the bank may or may not hold the instruction; ask
    again (the same id) later, never read it as refused."""


class DepositoryRefused(DepositoryError, Refused):
    """The bank refused the request itself (4xx): it holds no instruction from it."""

    reason_chars = _REASON_MAX


class DepositoryPort(Protocol):
    """A depository that takes split instructions. Implementations retry transient failures."""

    async def register_split(self, instruction: SplitInstruction) -> SplitReport:
        """Register the instruction (idempotent by its id); raises DepositoryUnavailable or
        DepositoryRefused."""
        ...

    async def register_splits(
        self, instructions: Sequence[SplitInstruction]
    ) -> list[SplitReport | DepositoryRefused]:
        """Register up to MAX_BATCH_SPLITS in one request: each instruction's report or its
        refusal, in order; raises DepositoryUnavailable when the batch got no usable answer
        (each may or may not be held: register again, under the same ids)."""
        ...

    async def query_split(self, split_request_id: str) -> SplitReport | None:
        """The instruction's state; None only when the bank says it never received it."""
        ...


class InvalidSplitResult(ValueError):
    """A split result we cannot read; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_answer(body: Any, split_request_id: str) -> SplitReport:
    """An answer to a registration or a query (not signed: it came over our own request)."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    if body.get("split_request_id") != split_request_id:
        raise ValueError("answer is about another split_request_id")
    try:
        status = SplitStatus(str(body.get("status")))
    except ValueError:
        raise ValueError(f"unknown status {str(body.get('status'))[:40]!r}") from None
    bank_split_id = body.get("bank_split_id")
    if bank_split_id is not None and (
        not isinstance(bank_split_id, str) or not 0 < len(bank_split_id) <= _ID_MAX
    ):
        raise ValueError("bank_split_id: not a string of 1 to 64 characters")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason: not a string")
    return SplitReport(split_request_id, status, bank_split_id or None, (reason or None))


def parse_batch_answer(
    body: Any, split_request_ids: Sequence[str]
) -> list[SplitReport | DepositoryRefused]:
    """A batch answer: exactly one item per instruction sent, in the order sent, each an
    answer about that instruction or its refusal. ValueError for anything else (the batch
    is then unanswered, never read as refused)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("results"), list):
        raise ValueError("batch answer without its results")
    items = body["results"]
    if len(items) != len(split_request_ids):
        raise ValueError(f"{len(items)} results for {len(split_request_ids)} instructions")
    outcomes: list[SplitReport | DepositoryRefused] = []
    for item, split_request_id in zip(items, split_request_ids, strict=True):
        if isinstance(item, Mapping) and item.get("status") == REFUSED:
            code = item.get("code")
            if code not in (400, 409):
                raise ValueError(f"refusal of {split_request_id} without its code")
            outcomes.append(DepositoryRefused.from_answer(code, item, ""))
        else:
            outcomes.append(parse_answer(item, split_request_id))
    return outcomes


def parse_split_result(biz: Mapping[str, Any], where: str = _BIZ) -> SplitReport:
    """A signed split result's ``biz_content`` (decoded), read strictly: every refusal names
    its field. JSON null and "" mean absent, as in the bank's other notifications; unknown keys
    are ignored (banks add fields)."""
    split_request_id = _required(biz, "split_request_id", _ID_MAX, where)
    if not _ID.fullmatch(split_request_id):
        raise InvalidSplitResult(f"{where}.split_request_id", "not 1 to 64 of [A-Za-z0-9._:-]")
    status_text = _required(biz, "status", 16, where)
    try:
        status = SplitStatus(status_text)
    except ValueError:
        allowed = ", ".join(s.value for s in SplitStatus)
        raise InvalidSplitResult(f"{where}.status", f"not one of {allowed}") from None
    try:
        amount = parse_minor_units(_required(biz, "amount", 16, where))
    except MoneyError:
        amount = 0
    if amount <= 0:
        raise InvalidSplitResult(f"{where}.amount", "not a positive integer amount of fen")
    finished_text = _optional(biz, "finished_time", 19, where)
    finished = None
    if finished_text is not None:
        try:
            finished = parse_bank_time(finished_text)
        except ValueError:
            raise InvalidSplitResult(
                f"{where}.finished_time", "expected yyyy-MM-dd HH:mm:ss"
            ) from None
    elif status is not SplitStatus.PROCESSING:
        raise InvalidSplitResult(f"{where}.finished_time", "missing")
    return SplitReport(
        split_request_id=split_request_id,
        status=status,
        bank_split_id=_optional(biz, "bank_split_id", _ID_MAX, where),
        reason=_optional(biz, "reason", _REASON_MAX, where),
        amount=amount,
        finished_time=finished,
    )


@dataclass(frozen=True, slots=True)
class SplitResultItem:
    """One result of a batch notification, and the item as the bank sent it (the gateway
    forwards the item itself, so the worker reads exactly what was verified)."""

    report: SplitReport
    item: Mapping[str, Any]


def parse_split_results(biz: Mapping[str, Any]) -> list[SplitResultItem]:
    """A batch notification's ``biz_content`` (decoded): every item read as a single result
    is, or none (refusals name the item: ``biz_content.results[3].amount: missing``)."""
    where = f"{_BIZ}.results"
    items = biz.get("results")
    if not isinstance(items, list) or not items:
        raise InvalidSplitResult(where, "missing, or not a non-empty list")
    if len(items) > MAX_SPLIT_RESULTS:
        raise InvalidSplitResult(where, f"more than {MAX_SPLIT_RESULTS} items")
    parsed: list[SplitResultItem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidSplitResult(f"{where}[{index}]", "not a JSON object")
        parsed.append(SplitResultItem(parse_split_result(item, f"{where}[{index}]"), item))
    return parsed


def _required(biz: Mapping[str, Any], key: str, max_len: int, where: str) -> str:
    value = _optional(biz, key, max_len, where)
    if value is None:
        raise InvalidSplitResult(f"{where}.{key}", "missing")
    return value


def _optional(biz: Mapping[str, Any], key: str, max_len: int, where: str) -> str | None:
    value = biz.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSplitResult(f"{where}.{key}", "not a string")
    if len(value) > max_len:
        raise InvalidSplitResult(f"{where}.{key}", f"longer than {max_len} characters")
    return value
