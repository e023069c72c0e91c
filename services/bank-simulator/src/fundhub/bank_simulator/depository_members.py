"""The simulated depository's members (会员): what it holds per request and what it decides.

No I/O and no clock of its own (times are passed in): the HTTP side (``depository_api``) takes
requests and schedules their decisions; the decisions happen here. The rules, so that anyone
can see every path from a test or a demo:

- a member is opened (OPEN) or its material re-reviewed (MATERIALS) after ``reviewDelayMs``:
  approved, unless the merchant's ``name`` starts with ``REJECT`` (refused with a reason);
- a settlement account (BIND) gets a micro-deposit of 1 to 50 fen after the same delay, unless
  the account holder's name starts with ``REJECT`` (refused: the name does not match the
  account); the amount is the member's to report, and a simulator-only endpoint tells it to
  tests and demos (``micro_deposit``);
- a reported amount (CONFIRM) is checked at once: right verifies the account; wrong counts a
  try, and after ``MAX_TRIES`` wrong ones the deposit accepts no more;
- a member is closed (CLOSE) after the delay, if it is an active member;
- an existing account is registered (REGISTER, data initialisation) at once, with no review to
  wait for: a member with its number, unless the merchant's ``name`` starts with ``REJECT``
  (refused with the review's reason); one already a member answers with its number again.

Requests are idempotent by ``request_id``: the same request again answers as the first did, the
id with another body is refused (409). Every random draw comes from the behaviour's seed and the
request's id, so a run with a given seed decides the same whatever the interleaving.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from fundhub.common.clock import format_bank_time
from fundhub.merchants.depository import NOT_FOUND
from fundhub.merchants.states import RequestKind, ResultStatus

REJECT_PREFIX = "REJECT"
MAX_MICRO_DEPOSIT = 50  # fen: at most 0.50 yuan, as 小额鉴权 sends
MAX_TRIES = 5
REVIEW_REFUSED = "refused by the depository's review: the merchant's name is on its refusal list"
ACCOUNT_NAME_MISMATCH = "the account holder's name does not match the bank's records"
NOT_A_MEMBER = "not an active member of the depository"
AMOUNT_MISMATCH = "the amount does not match the micro-deposit"
TOO_MANY_TRIES = f"more than {MAX_TRIES} wrong amounts: the micro-deposit is void"
_MAX_DELAY_MS = 3_600_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_AMOUNT = re.compile(r"^[1-9][0-9]{0,3}$")

DelayRange = tuple[int, int]


class DepositoryBehaviour(BaseModel):
    """How the depository behaves this run (``POST /depository/v1/behaviour``; CLI flags)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    review_delay_ms: DelayRange = Field(
        default=(200, 1_500),
        description="[min, max]: from a request to its decision (within 2 s by default).",
    )
    seed: int | None = Field(default=None, description="Default: random, reported back.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        low, high = self.review_delay_ms
        if not 0 <= low <= high <= _MAX_DELAY_MS:
            raise ValueError("reviewDelayMs: [min, max] with 0 <= min <= max <= 3600000")
        return self

    def with_seed(self) -> DepositoryBehaviour:
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbits(32)})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class MemberState(StrEnum):
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class RequestInvalid(ValueError):
    """A malformed request (400): the bank makes nothing of it."""


class RequestConflict(ValueError):
    """The request_id names another request (409)."""


@dataclass
class MemberRequest:
    request_id: str
    kind: RequestKind
    member_ext_id: str
    notify_url: str
    body: dict[str, Any]  # as received, notify_url aside: what a repeat must equal
    received_at: datetime
    status: ResultStatus = ResultStatus.PROCESSING
    reason: str | None = None
    member_no: str | None = None
    finished_at: datetime | None = None

    def answer(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "status": self.status.value,
            "reason": self.reason or "",
            "member_no": self.member_no or "",
        }

    def result_biz(self) -> dict[str, str]:
        """The signed notification's ``biz_content`` once the request is decided."""
        return {
            "request_id": self.request_id,
            "member_ext_id": self.member_ext_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "reason": self.reason or "",
            "member_no": self.member_no or "",
            "finished_time": format_bank_time(self.finished_at or self.received_at),
        }


@dataclass
class MicroDeposit:
    bind_request_id: str
    member_ext_id: str
    account_no: str
    amount: int
    wrong_tries: int = 0
    verified: bool = False


@dataclass
class Member:
    member_ext_id: str
    member_no: str
    state: MemberState = MemberState.ACTIVE


@dataclass
class DepositoryStats:
    requests: int = 0
    repeated: int = 0
    refused: int = 0
    approved: int = 0
    rejected: int = 0
    notifications_sent: int = 0
    notifications_delivered: int = 0
    notifications_failed: int = 0

    def to_json(self) -> dict[str, int]:
        return {to_camel(name): value for name, value in self.__dict__.items()}


@dataclass
class MemberBook:
    behaviour: DepositoryBehaviour = field(default_factory=DepositoryBehaviour)
    requests: dict[str, MemberRequest] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    deposits: dict[str, MicroDeposit] = field(default_factory=dict)  # by BIND request id
    latest_deposit: dict[str, str] = field(default_factory=dict)  # member -> BIND request id
    stats: DepositoryStats = field(default_factory=DepositoryStats)

    def __post_init__(self) -> None:
        self.behaviour = self.behaviour.with_seed()

    def set_behaviour(self, behaviour: DepositoryBehaviour) -> DepositoryBehaviour:
        self.behaviour = behaviour.with_seed()
        return self.behaviour

    def submit(self, wire: Any, now: datetime) -> tuple[MemberRequest, bool]:
        """Take a request (``depository.DepositoryRequest.to_wire``); the request and whether
        it is new. A CONFIRM and a REGISTER are decided at once; the others wait for
        ``decide``."""
        request = _parse(wire, now)
        known = self.requests.get(request.request_id)
        if known is not None:
            if known.body != request.body or known.kind is not request.kind:
                self.stats.refused += 1
                raise RequestConflict(f"request_id {request.request_id} names another request")
            self.stats.repeated += 1
            return known, False
        self.stats.requests += 1
        self.requests[request.request_id] = request
        if request.kind in (RequestKind.CONFIRM, RequestKind.REGISTER):
            self._decide(request, now)
        return request, True

    def review_delay_s(self, request_id: str) -> float:
        low, high = self.behaviour.review_delay_ms
        return self._rng("delay", request_id).uniform(low, high) / 1000.0

    def decide(self, request_id: str, now: datetime) -> MemberRequest:
        """The request's decision (once; later calls return it as it stands)."""
        request = self.requests[request_id]
        if request.status is ResultStatus.PROCESSING:
            self._decide(request, now)
        return request

    def query(self, request_id: str) -> dict[str, str] | None:
        request = self.requests.get(request_id)
        return None if request is None else request.answer()

    def micro_deposit(self, member_ext_id: str) -> MicroDeposit | None:
        """The member's latest micro-deposit (simulator only: a real bank never tells)."""
        bind_request_id = self.latest_deposit.get(member_ext_id)
        return None if bind_request_id is None else self.deposits[bind_request_id]

    # --- decisions -------------------------------------------------------------------------

    def _decide(self, request: MemberRequest, now: datetime) -> None:
        kind, body = request.kind, request.body
        member = self.members.get(request.member_ext_id)
        active = member is not None and member.state is MemberState.ACTIVE
        if kind in (RequestKind.OPEN, RequestKind.REGISTER):
            refused = _rejected_name(body["materials"].get("name"))
            if not refused and member is None:
                member = Member(request.member_ext_id, self._member_no(request.request_id))
                self.members[request.member_ext_id] = member
            self._finish(request, now, refused or (None if member else NOT_A_MEMBER), member)
        elif kind is RequestKind.MATERIALS:
            refused = _rejected_name(body["materials"].get("name"))
            self._finish(request, now, refused or (None if active else NOT_A_MEMBER), member)
        elif kind is RequestKind.BIND:
            account = body["account"]
            if not active:
                self._finish(request, now, NOT_A_MEMBER, member)
            elif str(account.get("account_name", "")).startswith(REJECT_PREFIX):
                self._finish(request, now, ACCOUNT_NAME_MISMATCH, member)
            else:
                amount = self._rng("deposit", request.request_id).randint(1, MAX_MICRO_DEPOSIT)
                self.deposits[request.request_id] = MicroDeposit(
                    request.request_id, request.member_ext_id, str(account["account_no"]), amount
                )
                self.latest_deposit[request.member_ext_id] = request.request_id
                self._finish(request, now, None, member)
        elif kind is RequestKind.CONFIRM:
            self._finish(request, now, self._check_amount(body), member)
        else:  # CLOSE
            if active and member is not None:
                member.state = MemberState.CLOSED
                self._finish(request, now, None, member)
            else:
                self._finish(request, now, NOT_A_MEMBER, member)

    def _check_amount(self, body: dict[str, Any]) -> str | None:
        deposit = self.deposits.get(str(body["bind_request_id"]))
        if deposit is None:
            return "no micro-deposit was sent under that bind_request_id"
        if deposit.verified:
            return None
        if deposit.wrong_tries >= MAX_TRIES:
            return TOO_MANY_TRIES
        if int(body["amount"]) == deposit.amount:
            deposit.verified = True
            return None
        deposit.wrong_tries += 1
        return AMOUNT_MISMATCH

    def _finish(
        self, request: MemberRequest, now: datetime, refusal: str | None, member: Member | None
    ) -> None:
        request.status = ResultStatus.FAILED if refusal else ResultStatus.SUCCESS
        request.reason = refusal
        request.member_no = member.member_no if member is not None and not refusal else None
        request.finished_at = now
        if refusal:
            self.stats.rejected += 1
        else:
            self.stats.approved += 1

    def _member_no(self, request_id: str) -> str:
        return "M" + str(self._rng("member", request_id).randrange(10**11, 10**12))

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.behaviour.seed, *parts)))


def not_found() -> dict[str, str]:
    return {"status": NOT_FOUND}


def _rejected_name(name: Any) -> str | None:
    return REVIEW_REFUSED if str(name or "").startswith(REJECT_PREFIX) else None


def _text(wire: dict[str, Any], key: str, max_len: int) -> str:
    value = wire.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise RequestInvalid(f"{key}: a string of 1 to {max_len} characters")
    return value


def _parse(wire: Any, now: datetime) -> MemberRequest:
    if not isinstance(wire, dict):
        raise RequestInvalid("body: not a JSON object")
    request_id = _text(wire, "request_id", 64)
    if not _REQUEST_ID.fullmatch(request_id):
        raise RequestInvalid("request_id: 1 to 64 of A-Z a-z 0-9 . _ : -")
    try:
        kind = RequestKind(_text(wire, "kind", 16))
    except ValueError:
        raise RequestInvalid(f"kind: one of {', '.join(RequestKind)}") from None
    member_ext_id = _text(wire, "member_ext_id", 64)
    notify_url = _text(wire, "notify_url", 512)
    if not notify_url.startswith(("http://", "https://")):
        raise RequestInvalid("notify_url: an http(s) URL")
    if kind in (RequestKind.OPEN, RequestKind.MATERIALS, RequestKind.REGISTER):
        materials = wire.get("materials")
        if not isinstance(materials, dict) or not isinstance(materials.get("name"), str):
            raise RequestInvalid("materials: an object with a name")
    elif kind is RequestKind.BIND:
        account = wire.get("account")
        if not isinstance(account, dict) or not all(
            isinstance(account.get(k), str) and account.get(k)
            for k in ("account_no", "account_name", "bank_name")
        ):
            raise RequestInvalid("account: account_no, account_name and bank_name")
    elif kind is RequestKind.CONFIRM:
        _text(wire, "bind_request_id", 64)
        if not _AMOUNT.fullmatch(str(wire.get("amount", ""))):
            raise RequestInvalid("amount: a positive integer string of fen")
    body = {k: v for k, v in wire.items() if k != "notify_url"}
    return MemberRequest(request_id, kind, member_ext_id, notify_url, body, now)
