"""Talking to the depository about members: the port, its types and the protocol's names. No I/O.

payment-worker codes against ``MemberDepository`` only, so a real bank's adapter plugs in beside
``depository_http.HttpDepository`` (which speaks the simulator's protocol, ``depository/v1``).
The names live here so that the simulator (the bank's side) and the worker agree.

The rules every adapter keeps, as for payouts: a request is sent under its ``request_id`` and
only ever under it, so a retry the bank already saw is deduplicated by the bank; an answer that
never came is not a failure, the caller asks again (``query``). Banks take most requests at once
and finish them later (a review, a micro-deposit, a close): the answer then says PROCESSING and
the result comes as the bank's signed notification, ``RESULT_METHOD``, to ``notify_url`` (or
from ``query``). A confirmation of a micro-deposit's amount is answered at once, and so is
REGISTER, the registration of an existing account (data initialisation; one call with a
function flag, as 见证宝's member interface has it): nothing is left to review.

The wire, like the bank's other APIs: snake_case JSON, amounts as strings of fen.
``POST REQUESTS_PATH`` takes ``{request_id, kind, member_ext_id (our merchantId), notify_url,
...}`` with, by kind: ``version`` and ``materials`` (OPEN, MATERIALS, REGISTER), ``account``
{account_no, account_name, bank_name} (BIND), ``bind_request_id`` and ``amount`` (CONFIRM),
nothing (CLOSE); answered ``{request_id, status, reason, member_no}``.
``GET REQUESTS_PATH/{request_id}`` answers the same, or 404 ``{"status": "NOT_FOUND"}`` for a
request the bank never received.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fundhub.bank_client.refusal import Refused
from fundhub.common.clock import parse_bank_time
from fundhub.merchants.states import RequestKind, ResultStatus

REQUESTS_PATH = "/depository/v1/requests"
RESULT_METHOD = "bkfunds.member.result.notify"
NOT_FOUND = "NOT_FOUND"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ID_MAX = 64
_REASON_MAX = 256
_ANSWER_LIMIT = 200


@dataclass(frozen=True)
class DepositoryRequest:
    """One request to the depository; ``details`` are its kind's fields (snake_case)."""

    request_id: str
    kind: RequestKind
    member_ext_id: str
    notify_url: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _REQUEST_ID.fullmatch(self.request_id):
            raise ValueError("request_id: 1 to 64 of [A-Za-z0-9._:-]")
        if not self.notify_url.startswith(("http://", "https://")):
            raise ValueError("notify_url: must be an http(s) URL")

    def to_wire(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "kind": self.kind.value,
            "member_ext_id": self.member_ext_id,
            "notify_url": self.notify_url,
            **self.details,
        }


def existing_account(
    request_id: str, member_ext_id: str, notify_url: str, materials: Mapping[str, Any]
) -> DepositoryRequest:
    """Register an existing account (data initialisation): the merchant's version 1, as the API
    stores it (camelCase), sent as OPEN sends it; the bank answers at once."""
    return DepositoryRequest(
        request_id,
        RequestKind.REGISTER,
        member_ext_id,
        notify_url,
        {"version": "1", "materials": snake_case(materials)},
    )


@dataclass(frozen=True)
class DepositoryAnswer:
    request_id: str
    status: ResultStatus
    reason: str | None = None
    member_no: str | None = None

    @property
    def final(self) -> bool:
        return self.status is not ResultStatus.PROCESSING


class DepositoryError(Exception):
    """Anything that keeps an adapter from giving a ``DepositoryAnswer``."""


class DepositoryUnavailable(DepositoryError):
    """No usable answer after the retries: the bank may or may not hold the request; ask again
    later (``query``), or send it again under the same id. Never a refusal of the request."""


class DepositoryRefused(DepositoryError, Refused):
    """The bank refused the request itself (4xx). Not retried: the same bytes get the same
    answer. 400: nothing was made of it; 409: the id names another request."""

    reason_chars = _ANSWER_LIMIT


class MemberDepository(Protocol):
    """The depository's member services. Implementations retry transient failures themselves."""

    async def submit(self, request: DepositoryRequest) -> DepositoryAnswer:
        """Send the request (idempotent by ``request_id``); the bank's first answer.

        Raises ``DepositoryUnavailable`` when no answer came, ``DepositoryRefused`` on a refusal.
        """
        ...

    async def query(self, request_id: str) -> DepositoryAnswer | None:
        """Where the request stands; None only when the bank says it never received it."""
        ...


def snake_case(value: Any) -> Any:
    """Our camelCase JSON in the bank's spelling (``legalPerson.idNumber`` -> ``id_number``)."""
    if isinstance(value, Mapping):
        return {_snake_key(k): snake_case(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_case(item) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _snake_key(key: str) -> str:
    """Keys repeat (every merchant's material has the same few): converted once each."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def parse_answer(body: Any, request_id: str) -> DepositoryAnswer:
    """Check an answer's shape; ValueError names what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    if body.get("request_id") != request_id:
        raise ValueError("answer is about another request_id")
    try:
        status = ResultStatus(str(body.get("status")))
    except ValueError:
        raise ValueError(f"unknown status {str(body.get('status'))[:40]!r}") from None
    reason = _text(body, "reason", _REASON_MAX)
    member_no = _text(body, "member_no", _ID_MAX)
    return DepositoryAnswer(request_id, status, reason, member_no)


def _text(body: Mapping[str, Any], key: str, max_len: int) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ValueError(f"{key}: not a string of at most {max_len} characters")
    return value


# --- the signed result notification (RESULT_METHOD) ---------------------------------------------


class InvalidMemberResult(ValueError):
    """A member result we cannot read; the message starts with the field's name."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"biz_content.{field_name}: {message}")


@dataclass(frozen=True)
class MemberResult:
    """The bank's final word on one of our requests, from its signed notification."""

    request_id: str
    member_ext_id: str
    kind: RequestKind
    status: ResultStatus
    reason: str | None
    member_no: str | None
    finished_time: datetime


def parse_member_result(biz: Mapping[str, Any]) -> MemberResult:
    """Validate a ``RESULT_METHOD`` notification's ``biz_content`` (decoded). Only final states
    are notified; unknown keys are ignored (banks add fields); "" and null mean absent."""
    request_id = _required(biz, "request_id")
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidMemberResult("request_id", "1 to 64 of A-Z a-z 0-9 . _ : -")
    member_ext_id = _required(biz, "member_ext_id")
    try:
        kind = RequestKind(_required(biz, "kind"))
    except ValueError:
        raise InvalidMemberResult("kind", f"not one of {', '.join(RequestKind)}") from None
    try:
        status = ResultStatus(_required(biz, "status"))
    except ValueError:
        raise InvalidMemberResult("status", "not SUCCESS or FAILED") from None
    if status is ResultStatus.PROCESSING:
        raise InvalidMemberResult("status", "not SUCCESS or FAILED")
    try:
        finished = parse_bank_time(_required(biz, "finished_time"))
    except ValueError:
        raise InvalidMemberResult("finished_time", "expected yyyy-MM-dd HH:mm:ss") from None
    return MemberResult(
        request_id=request_id,
        member_ext_id=member_ext_id,
        kind=kind,
        status=status,
        reason=_optional(biz, "reason", _REASON_MAX),
        member_no=_optional(biz, "member_no", _ID_MAX),
        finished_time=finished,
    )


def _required(biz: Mapping[str, Any], key: str) -> str:
    value = _optional(biz, key, _ID_MAX)
    if value is None:
        raise InvalidMemberResult(key, "missing")
    return value


def _optional(biz: Mapping[str, Any], key: str, max_len: int) -> str | None:
    value = biz.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidMemberResult(key, "not a string")
    if len(value) > max_len:
        raise InvalidMemberResult(key, f"longer than {max_len} characters")
    return value
