"""The bank's reports on payouts; the parser lives in common (the gateway validates with it)."""

from __future__ import annotations

from fundhub.common.bank_payouts import RESULT_METHOD, BankStatus
from fundhub.common.payout_results import BankResult, InvalidBankResult, parse_bank_result

PAYOUT_RESULT_METHOD = RESULT_METHOD

__all__ = [
    "PAYOUT_RESULT_METHOD",
    "BankResult",
    "BankStatus",
    "InvalidBankResult",
    "parse_bank_result",
]
