"""Sandbox scenarios: what a sandbox client asks the simulated bank to do with one payout.

A client integrating against the sandbox needs the unhappy paths on demand (a payout that
fails, a result notification that comes late or twice), not at a random rate. It names the
payout by the ``requestId`` it is about to create it with, before creating it, so the scenario
is in place whatever the timing of payment-worker; the worker passes it to the simulator with
the order (``sandbox_bank``). Only a sandbox deployment serves this (see README "Sandbox").

Pure: parsing of the client's camelCase body, and the bank simulator's snake_case wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError

from fundhub.common.json_body import InvalidBody, StrictBody, first_error, has_control, parse_object

# Where the simulator takes scenarios: {"scenarios": [<wire>, ...]}, at most MAX_BATCH.
SCENARIOS_PATH = "/bank/v1/sandbox/scenarios"
MAX_RESULT_DELAY_MS = 60_000
MAX_REASON = 200
# What a key may hold at once: enough to script a test suite, bounded so a key cannot grow
# the table without end (one row per requestId, replaced when given again).
MAX_SCENARIOS_PER_KEY = 1_000
DEFAULT_FAIL_REASON = "sandbox scenario: payout forced to fail"
DEFAULT_RETURN_REASON = "sandbox scenario: returned by the payee's bank"

Outcome = Literal["SUCCESS", "FAILED", "RETURNED"]

_MESSAGES: dict[str, str] = {
    "requestId": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "outcome": "must be SUCCESS, FAILED or RETURNED",
    "reason": f"must be 1 to {MAX_REASON} characters without control characters",
    "resultDelayMs": f"must be an integer from 0 to {MAX_RESULT_DELAY_MS}",
    "resultCopies": "must be 1 or 2",
}


class InvalidScenario(InvalidBody):
    """A refused scenario body; names its field (E001)."""


def _text(value: str) -> str:
    if has_control(value) or not value.strip():
        raise ValueError("control characters or blank")
    return value


class ScenarioRequest(StrictBody):
    """``POST /v1/sandbox/payout-scenarios``: how the bank treats the payout created next with
    ``requestId`` by this key. ``resultDelayMs``: how long after taking the payout the bank's
    result notification comes (the payout stays PROCESSING until then); ``resultCopies`` 2: it
    comes twice (the payout still moves once)."""

    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    outcome: Outcome
    reason: Annotated[str, Field(max_length=MAX_REASON), AfterValidator(_text)] | None = None
    result_delay_ms: Annotated[int, Field(ge=0, le=MAX_RESULT_DELAY_MS)] = 0
    result_copies: Annotated[int, Field(ge=1, le=2)] = 1


def parse_scenario_request(raw: bytes) -> ScenarioRequest:
    """The body as a scenario; raises InvalidScenario naming the first bad field."""
    try:
        document = parse_object(raw)
    except InvalidBody as exc:
        raise InvalidScenario(exc.field, exc.message) from None
    try:
        return ScenarioRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        refusal = first_error(exc, _MESSAGES)
        raise InvalidScenario(refusal.field, refusal.message) from None


@dataclass(frozen=True, slots=True)
class PayoutScenario:
    """A scenario bound to the payout it is for (``bank_request_id`` is the payId)."""

    bank_request_id: str
    outcome: Outcome
    reason: str | None
    result_delay_ms: int
    result_copies: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "bank_request_id": self.bank_request_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "result_delay_ms": self.result_delay_ms,
            "result_copies": self.result_copies,
        }

    @property
    def stated_reason(self) -> str | None:
        """The reason the bank gives: the client's, or a default for FAILED and RETURNED."""
        if self.outcome == "FAILED":
            return self.reason or DEFAULT_FAIL_REASON
        if self.outcome == "RETURNED":
            return self.reason or DEFAULT_RETURN_REASON
        return None


def scenario_from_wire(item: Any) -> PayoutScenario:
    """The simulator's side: one item of ``{"scenarios": [...]}``; raises ValueError."""
    if not isinstance(item, dict):
        raise ValueError("scenario: not an object")
    try:
        request = ScenarioRequest.model_validate(
            {
                "request_id": item.get("bank_request_id"),
                "outcome": item.get("outcome"),
                "reason": item.get("reason"),
                "result_delay_ms": item.get("result_delay_ms", 0),
                "result_copies": item.get("result_copies", 1),
            },
            by_alias=False,
            by_name=True,
        )
    except ValidationError as exc:
        refusal = first_error(exc, _MESSAGES)
        raise ValueError(str(refusal)) from None
    return PayoutScenario(
        request.request_id,
        request.outcome,
        request.reason,
        request.result_delay_ms,
        request.result_copies,
    )
