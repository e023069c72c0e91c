"""Scenarios a sandbox client placed (``payouts.sandbox``), held until their payout arrives.

payment-worker posts a payout's scenario just before the payout itself; the bank then plans
that transfer from the scenario instead of its rates. Pure: the book and the plan it forces.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from fundhub.payouts.bank import BankStatus
from fundhub.payouts.sandbox import PayoutScenario

if TYPE_CHECKING:  # payouts_bank holds a ScenarioBook: the plan's type only, at check time
    from fundhub.bank_simulator.payouts_bank import TransferPlan

# Scenarios waiting for their payout: a payout that never comes must not hold one for ever.
MAX_WAITING = 10_000
# A second copy of the result follows the first by this much (a resend, not a race).
_COPY_GAP_S = 0.05
# A RETURNED payout is first paid, then returned this long after its result.
_RETURN_AFTER_S = 0.3


class ScenarioBook:
    """The scenarios by ``bank_request_id``; the oldest dropped past MAX_WAITING."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self._waiting: OrderedDict[str, PayoutScenario] = OrderedDict()
        self._max = max_waiting
        self.applied = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, scenario: PayoutScenario) -> None:
        """Hold it (again: the latest word for an id wins)."""
        self._waiting.pop(scenario.bank_request_id, None)
        self._waiting[scenario.bank_request_id] = scenario
        while len(self._waiting) > self._max:
            self._waiting.popitem(last=False)

    def take(self, bank_request_id: str) -> PayoutScenario | None:
        scenario = self._waiting.pop(bank_request_id, None)
        if scenario is not None:
            self.applied += 1
        return scenario


def forced_plan(plan: TransferPlan, scenario: PayoutScenario) -> TransferPlan:
    """``plan`` as the scenario wants it: its outcome, in a result notification that comes
    ``result_delay_ms`` after the payout was taken, once or twice, never in the first answer."""
    delay_s = scenario.result_delay_ms / 1000.0
    returned = scenario.outcome == "RETURNED"
    failed = scenario.outcome == "FAILED"
    return replace(
        plan,
        outcome=BankStatus.FAILED if failed else BankStatus.SUCCESS,
        reason=scenario.stated_reason if failed else None,
        answer_final=False,
        callback=True,
        callback_after_s=delay_s,
        duplicate=scenario.result_copies == 2,
        duplicate_after_s=delay_s + _COPY_GAP_S,
        return_after_s=_RETURN_AFTER_S if returned else None,
        return_reason=scenario.stated_reason if returned else None,
    )
