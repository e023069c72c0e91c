"""The simulated bank's payout book: what it holds per ``bank_request_id``, and its decisions.

No I/O and no clock of its own (times are passed in): the HTTP side (``payout_api``) and the
timeline that settles transfers and sends their callbacks (``payout_callbacks``) drive it.

Every random decision about a transfer comes from a generator seeded with the behaviour's seed
and the transfer's id (plus the attempt number for per-request faults), so a run with a given
seed decides the same for the same ids however the requests interleave. A batch request's one
fault is drawn alike, from the seed, the batch's ids and its attempt number.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from fundhub.bank_simulator.sandbox_scenarios import ScenarioBook, forced_plan
from fundhub.common.clock import format_bank_time
from fundhub.common.money import MoneyError, normalize_currency, parse_minor_units
from fundhub.payouts.bank import (
    MAX_BATCH,
    NOT_FOUND,
    PAYEE_REASON_PREFIX,
    REFUSED,
    BankStatus,
    PayoutOrder,
)

_PAYEE = PAYEE_REASON_PREFIX
# Why the bank fails a payout. The payee ones start with PAYEE_REASON_PREFIX (E016 upstream).
FAIL_REASONS: tuple[str, ...] = (
    _PAYEE + "account closed",
    _PAYEE + "account does not exist",
    _PAYEE + "name does not match the account",
    "payer account restricted by the bank",
    "exceeds the payee bank's single-transfer limit",
    "refused by the bank's risk control",
)
RETURN_REASONS: tuple[str, ...] = (
    "returned by the payee's bank: account closed after crediting",
    "returned by the payee's bank: payee refused the funds",
)

_MS = 1000.0
_MAX_DELAY_MS = 3_600_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ACCOUNT_NO = re.compile(r"^[0-9A-Za-z]{1,34}$")
# field -> (max characters, required)
_TEXT_FIELDS: dict[str, tuple[int, bool]] = {
    "payer_account": (32, True),
    "payee_account_name": (100, True),
    "payee_bank_name": (120, True),
    "purpose": (200, False),
    "notify_url": (512, True),
}


DelayRange = tuple[int, int]


class PayoutBehaviour(BaseModel):
    """How the bank behaves this run (``POST /bank/v1/behaviour``, camelCase; CLI flags).

    Rates are probabilities per transfer, except ``timeoutRate`` and ``serverErrorRate``,
    which apply to each request (a batch is one request): a client's retry may get through
    where the first try did not. A timed-out or 5xx request still makes its transfers.
    ``processingRate`` is the share of first answers that say PROCESSING; the others already
    carry the outcome.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    fail_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    server_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    processing_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    duplicate_callback_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    late_return_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    never_answer_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    callback_delay_ms: DelayRange = Field(
        default=(20, 200), description="[min, max]: from acceptance to the outcome's callback."
    )
    return_delay_ms: DelayRange = Field(
        default=(500, 2_000), description="[min, max]: from SUCCESS to a late RETURNED."
    )
    timeout_delay_ms: int = Field(
        default=15_000,
        ge=0,
        le=_MAX_DELAY_MS,
        description="How late a timed-out request is answered: past the client's timeout.",
    )
    seed: int | None = Field(default=None, description="Default: random, reported back.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("callback_delay_ms", "return_delay_ms"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= _MAX_DELAY_MS:
                raise ValueError(f"{to_camel(name)}: [min, max] with 0 <= min <= max <= 3600000")
        if self.timeout_rate + self.server_error_rate > 1.0:
            raise ValueError("timeoutRate + serverErrorRate must not exceed 1")
        return self

    def with_seed(self) -> PayoutBehaviour:
        """This behaviour with a concrete seed (a random one when none was given)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbits(32)})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Fault(StrEnum):
    """What goes wrong with one request (the transfer it carries is made all the same)."""

    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """Everything decided about a transfer when it arrives.

    ``outcome`` lands at once when ``answer_final``, else ``callback_after_s`` later, which is
    also when its callback leaves (none at all unless ``callback``). A SUCCESS with
    ``return_after_s`` turns RETURNED that long after its outcome.
    """

    outcome: BankStatus
    reason: str | None
    answer_final: bool
    callback: bool
    callback_after_s: float
    duplicate: bool
    duplicate_after_s: float
    return_after_s: float | None
    return_reason: str | None


def _rng(seed: int | None, *parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and processes.
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def _delay_s(rng: random.Random, window: DelayRange) -> float:
    return rng.uniform(window[0], window[1]) / _MS


def plan_transfer(behaviour: PayoutBehaviour, bank_request_id: str) -> TransferPlan:
    """Decide a transfer's fate from the behaviour and its id (same seed and id, same plan)."""
    rng = _rng(behaviour.seed, "plan", bank_request_id)
    # Draw every decision, used or not, so one rate never shifts the dice of another.
    fails = rng.random() < behaviour.fail_rate
    reason = rng.choice(FAIL_REASONS)
    answer_final = rng.random() >= behaviour.processing_rate
    callback = rng.random() >= behaviour.never_answer_rate
    callback_after_s = _delay_s(rng, behaviour.callback_delay_ms)
    duplicate = rng.random() < behaviour.duplicate_callback_rate
    duplicate_after_s = _delay_s(rng, behaviour.callback_delay_ms)
    returns = rng.random() < behaviour.late_return_rate
    return_after_s = _delay_s(rng, behaviour.return_delay_ms)
    return_reason = rng.choice(RETURN_REASONS)
    return TransferPlan(
        outcome=BankStatus.FAILED if fails else BankStatus.SUCCESS,
        reason=reason if fails else None,
        answer_final=answer_final,
        callback=callback,
        callback_after_s=callback_after_s,
        duplicate=duplicate,
        duplicate_after_s=duplicate_after_s,
        return_after_s=None if fails or not returns else return_after_s,
        return_reason=None if fails or not returns else return_reason,
    )


def attempt_fault(behaviour: PayoutBehaviour, bank_request_id: str, attempt: int) -> Fault | None:
    """What goes wrong with the ``attempt``-th POST (1-based) of this transfer, if anything."""
    return _fault(behaviour, _rng(behaviour.seed, "attempt", bank_request_id, attempt).random())


def batch_fault(
    behaviour: PayoutBehaviour, bank_request_ids: Sequence[str], attempt: int
) -> Fault | None:
    """What goes wrong with the ``attempt``-th POST (1-based) of a batch of these ids, in this
    order, if anything: one draw for the whole request, as the rates are per request."""
    digest = hashlib.sha256("\n".join(bank_request_ids).encode()).hexdigest()
    return _fault(behaviour, _rng(behaviour.seed, "batch", digest, attempt).random())


def _fault(behaviour: PayoutBehaviour, draw: float) -> Fault | None:
    if draw < behaviour.timeout_rate:
        return Fault.TIMEOUT
    if draw < behaviour.timeout_rate + behaviour.server_error_rate:
        return Fault.SERVER_ERROR
    return None


def bank_txn_id(bank_request_id: str) -> str:
    """The bank's transaction number for a request: stable, so a resubmission gets the same."""
    digest = hashlib.sha256(f"payout:{bank_request_id}".encode()).digest()
    return f"BTX{int.from_bytes(digest[:8], 'big') % 10**17:017d}"


class TransferRequestError(ValueError):
    """A transfer request the bank refuses outright (HTTP 400); the message names the field."""


def order_from_wire(body: Any) -> PayoutOrder:
    """Validate a ``POST /bank/v1/transfers`` body as the bank does; unknown keys are ignored."""
    if not isinstance(body, Mapping):
        raise TransferRequestError("body: not a JSON object")
    request_id = body.get("bank_request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise TransferRequestError("bank_request_id: 1 to 64 of [A-Za-z0-9._:-]")
    texts: dict[str, str | None] = {}
    for name, (limit, required) in _TEXT_FIELDS.items():
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise TransferRequestError(f"{name}: required")
            texts[name] = None
        elif not isinstance(value, str) or len(value) > limit:
            raise TransferRequestError(f"{name}: a string of at most {limit} characters")
        else:
            texts[name] = value
    account_no = body.get("payee_account_no")
    if not isinstance(account_no, str) or not _ACCOUNT_NO.fullmatch(account_no):
        raise TransferRequestError("payee_account_no: 1 to 34 letters or digits")
    amount_text = body.get("amount")
    try:
        if not isinstance(amount_text, str):
            raise MoneyError("not a string")
        amount = parse_minor_units(amount_text)
        if amount == 0:
            raise MoneyError("zero")
    except MoneyError:
        raise TransferRequestError("amount: a positive integer string of fen") from None
    currency = body.get("currency")
    try:
        iso = normalize_currency(currency if isinstance(currency, str) else "")
    except MoneyError:
        raise TransferRequestError("currency: an ISO 4217 code the bank settles in") from None
    notify_url = texts["notify_url"] or ""
    if not notify_url.startswith(("http://", "https://")):
        raise TransferRequestError("notify_url: an http(s) URL")
    return PayoutOrder(
        bank_request_id=request_id,
        payer_account=texts["payer_account"] or "",
        amount=amount,
        currency=iso,
        payee_account_no=account_no,
        payee_account_name=texts["payee_account_name"] or "",
        payee_bank_name=texts["payee_bank_name"] or "",
        notify_url=notify_url,
        purpose=texts["purpose"],
    )


def batch_from_wire(body: Any) -> list[Any]:
    """The items of a ``POST /bank/v1/transfers/batch`` body, each still to be read as an order
    (``order_from_wire``): a bad item is refused alone, a bad batch as a whole."""
    if not isinstance(body, Mapping):
        raise TransferRequestError("body: not a JSON object")
    items = body.get("transfers")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise TransferRequestError(f"transfers: a list of 1 to {MAX_BATCH} transfer requests")
    return items


class TransferConflict(Exception):
    """The id was already used for a transfer with other details (HTTP 409)."""


@dataclass(slots=True)
class Transfer:
    """One payout as the bank holds it."""

    order: PayoutOrder
    bank_txn_id: str
    plan: TransferPlan
    received_at: datetime
    status: BankStatus = BankStatus.PROCESSING
    reason: str | None = None
    finished_at: datetime | None = None
    submits: int = 1
    paid_at: datetime | None = None  # when it went SUCCESS (a RETURNED one was paid first)

    @property
    def bank_request_id(self) -> str:
        return self.order.bank_request_id

    def answer(self) -> dict[str, str]:
        """The JSON of a transfer answer (POST and GET alike)."""
        body = {
            "bank_request_id": self.order.bank_request_id,
            "bank_txn_id": self.bank_txn_id,
            "status": self.status.value,
            "amount": str(self.order.amount),
            "currency": self.order.currency,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.finished_at is not None:
            body["finished_time"] = format_bank_time(self.finished_at)
        return body


@dataclass(frozen=True, slots=True)
class Submission:
    """What a POST did: the transfer, whether it is new, and what goes wrong with the answer."""

    transfer: Transfer
    created: bool
    fault: Fault | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An order of a batch refused alone: 400, invalid (nothing made); 409, the id is taken."""

    bank_request_id: str | None
    code: int
    error: str

    def answer(self) -> dict[str, Any]:
        """The JSON of a refused item, in the batch answer where the order's answer would be."""
        return {
            "bank_request_id": self.bank_request_id,
            "status": REFUSED,
            "code": self.code,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class BatchSubmission:
    """What a batch POST did: per order its transfer or refusal, the new transfers, and what
    goes wrong with the answer (the same for every order in it)."""

    items: list[Transfer | Refusal]
    created: list[Transfer]
    fault: Fault | None

    def answer(self) -> dict[str, list[dict[str, Any]]]:
        return {"results": [item.answer() for item in self.items]}


@dataclass(slots=True)
class PayoutStats:
    """Counters behind ``GET /bank/v1/stats``."""

    submits: int = 0
    duplicate_submits: int = 0
    batches: int = 0
    refused: int = 0
    conflicts: int = 0
    timeouts: int = 0
    server_errors: int = 0
    final_first_answers: int = 0
    queries: int = 0
    queries_not_found: int = 0
    callbacks_sent: int = 0
    callbacks_delivered: int = 0
    callbacks_failed: int = 0
    callbacks_duplicated: int = 0
    callbacks_withheld: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # currency -> status -> sum of amounts (minor units) of the transfers now in that status
    amounts: dict[str, Counter[str]] = field(default_factory=dict)

    def move(self, order: PayoutOrder, old: BankStatus | None, new: BankStatus) -> None:
        amounts = self.amounts.setdefault(order.currency, Counter())
        if old is not None:
            self.statuses[old.value] -= 1
            amounts[old.value] -= order.amount
        self.statuses[new.value] += 1
        amounts[new.value] += order.amount

    def to_json(self) -> dict[str, Any]:
        return {
            "transfers": sum(self.statuses.values()),
            "submits": self.submits,
            "duplicateSubmits": self.duplicate_submits,
            "batches": self.batches,
            "refused": self.refused,
            "conflicts": self.conflicts,
            "timeouts": self.timeouts,
            "serverErrors": self.server_errors,
            "finalFirstAnswers": self.final_first_answers,
            "queries": self.queries,
            "queriesNotFound": self.queries_not_found,
            "callbacks": {
                "sent": self.callbacks_sent,
                "delivered": self.callbacks_delivered,
                "failed": self.callbacks_failed,
                "duplicated": self.callbacks_duplicated,
                "withheld": self.callbacks_withheld,
            },
            "statuses": {status.value: self.statuses[status.value] for status in BankStatus},
            "amounts": {
                currency: {status.value: sums[status.value] for status in BankStatus}
                for currency, sums in sorted(self.amounts.items())
            },
        }


class PayoutBank:
    """Transfers in memory, keyed by ``bank_request_id``; idempotent by that id."""

    def __init__(self, behaviour: PayoutBehaviour | None = None) -> None:
        self._behaviour = (behaviour or PayoutBehaviour()).with_seed()
        self._transfers: dict[str, Transfer] = {}
        self.stats = PayoutStats()
        # Sandbox scenarios by bank_request_id: they override the rates for their transfer.
        self.scenarios = ScenarioBook()

    @property
    def behaviour(self) -> PayoutBehaviour:
        return self._behaviour

    def set_behaviour(self, behaviour: PayoutBehaviour) -> PayoutBehaviour:
        """Applies to transfers arriving from now on, and to every later request's faults."""
        self._behaviour = behaviour.with_seed()
        return self._behaviour

    def __len__(self) -> int:
        return len(self._transfers)

    def submit(self, order: PayoutOrder, now: datetime) -> Submission:
        """Take a transfer request; a repeat of a known id changes nothing but the counters."""
        transfer, created = self._take(order, now)
        fault = self._count_fault(
            attempt_fault(self._behaviour, transfer.bank_request_id, transfer.submits)
        )
        if created and transfer.plan.answer_final and fault is None:
            self.stats.final_first_answers += 1
        return Submission(transfer, created, fault)

    def submit_batch(self, items: Sequence[Any], now: datetime) -> BatchSubmission:
        """Take each item of a batch as ``submit`` takes an order, refusing bad ones alone.

        The request's one fault is drawn from the batch's ids and its attempt number, which is
        the most times any of its transfers has now been sent: a client's retry of the batch
        draws anew, and the same requests replayed draw the same.
        """
        self.stats.batches += 1
        taken: list[Transfer | Refusal] = []
        created: list[Transfer] = []
        for item in items:
            outcome, new = self._take_item(item, now)
            taken.append(outcome)
            if new and isinstance(outcome, Transfer):
                created.append(outcome)
        attempt = max((t.submits for t in taken if isinstance(t, Transfer)), default=1)
        request_ids = [t.bank_request_id or "" for t in taken]
        fault = self._count_fault(batch_fault(self._behaviour, request_ids, attempt))
        if fault is None:
            self.stats.final_first_answers += sum(t.plan.answer_final for t in created)
        return BatchSubmission(taken, created, fault)

    def _take_item(self, item: Any, now: datetime) -> tuple[Transfer | Refusal, bool]:
        try:
            order = order_from_wire(item)
        except TransferRequestError as exc:
            self.stats.refused += 1
            request_id = item.get("bank_request_id") if isinstance(item, Mapping) else None
            refused_id = request_id if isinstance(request_id, str) else None
            return Refusal(refused_id, 400, str(exc)), False
        try:
            return self._take(order, now)
        except TransferConflict as exc:
            return Refusal(order.bank_request_id, 409, str(exc)), False

    def _take(self, order: PayoutOrder, now: datetime) -> tuple[Transfer, bool]:
        """The transfer for this order, made now unless known (then True); no fault drawn."""
        existing = self._transfers.get(order.bank_request_id)
        if existing is not None:
            if existing.order != order:
                self.stats.conflicts += 1
                raise TransferConflict(
                    f"bank_request_id {order.bank_request_id} was used for another transfer"
                )
            existing.submits += 1
            self.stats.submits += 1
            self.stats.duplicate_submits += 1
            return existing, False
        plan = plan_transfer(self._behaviour, order.bank_request_id)
        scenario = self.scenarios.take(order.bank_request_id)
        if scenario is not None:
            plan = forced_plan(plan, scenario)
        transfer = Transfer(
            order=order,
            bank_txn_id=bank_txn_id(order.bank_request_id),
            plan=plan,
            received_at=now,
        )
        self._transfers[order.bank_request_id] = transfer
        self.stats.submits += 1
        self.stats.move(order, None, BankStatus.PROCESSING)
        if plan.answer_final:
            self.settle(order.bank_request_id, now)
        return transfer, True

    def _count_fault(self, fault: Fault | None) -> Fault | None:
        if fault is Fault.TIMEOUT:
            self.stats.timeouts += 1
        elif fault is Fault.SERVER_ERROR:
            self.stats.server_errors += 1
        return fault

    def get(self, bank_request_id: str) -> Transfer | None:
        return self._transfers.get(bank_request_id)

    def query(self, bank_request_id: str) -> dict[str, str] | None:
        """A ``GET`` on a transfer: its answer, or None when the bank never received it."""
        self.stats.queries += 1
        transfer = self._transfers.get(bank_request_id)
        if transfer is None:
            self.stats.queries_not_found += 1
            return None
        return transfer.answer()

    def settle(self, bank_request_id: str, now: datetime) -> bool:
        """Land the planned outcome of a PROCESSING transfer; False when there is nothing to do."""
        transfer = self._transfers.get(bank_request_id)
        if transfer is None or transfer.status is not BankStatus.PROCESSING:
            return False
        self._move(transfer, transfer.plan.outcome, transfer.plan.reason, now)
        return True

    def return_payout(self, bank_request_id: str, now: datetime) -> bool:
        """A paid transfer comes back from the payee's bank; False unless it was SUCCESS."""
        transfer = self._transfers.get(bank_request_id)
        if transfer is None or transfer.status is not BankStatus.SUCCESS:
            return False
        reason = transfer.plan.return_reason or RETURN_REASONS[0]
        self._move(transfer, BankStatus.RETURNED, reason, now)
        return True

    def _move(
        self, transfer: Transfer, status: BankStatus, reason: str | None, now: datetime
    ) -> None:
        self.stats.move(transfer.order, transfer.status, status)
        transfer.status = status
        transfer.reason = reason
        transfer.finished_at = now
        if status is BankStatus.SUCCESS:
            transfer.paid_at = now

    def transfers(self) -> list[Transfer]:
        """Every transfer the bank holds (its daily file is made from them)."""
        return list(self._transfers.values())


def not_found() -> dict[str, str]:
    return {"status": NOT_FOUND}
