"""The key a line is matched by. Pure.

A channel's line is about one order or refund: its reference is the key. The bank's lines are
about several kinds of the platform's records, told apart by the business type (an arrival's
record id and a payout's payId could coincide), and a split (分账) credits each member under one
split reference (a refund after it debits each under the refund's): so the bank's key is
``BUSINESS:reference``, and a split's (or its refund's) adds the member's account. The
platform's side builds the same keys in SQL (``matching``).
"""

from __future__ import annotations

from fundhub.reconciliation.statement import StatementLine

PER_ACCOUNT = frozenset({"SPLIT_IN", "SPLIT_REFUND"})


def line_key(line: StatementLine) -> str:
    if line.business is None:
        return line.reference
    if line.business in PER_ACCOUNT:
        return f"{line.business}:{line.reference}:{line.account or ''}"
    return f"{line.business}:{line.reference}"
