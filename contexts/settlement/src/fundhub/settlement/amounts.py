"""What a settlement moves for each receiver of an order's split. Pure.

A receiver's share of a paid order waits in its ``pending`` bucket. Refunds made before the
order settles take their part back from that bucket, so what is left to move to ``available``
is the receiver's split amount less what refunds took from it. A receiver left with nothing
moves nothing (an entry holds no zero posting); an order whose receivers are all left with
nothing is fully refunded and has nothing to settle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class InvalidShares(ValueError):
    """Shares that cannot come from a valid order (a refund above the split, a negative one)."""


class NothingToSettle(ValueError):
    """Every receiver's share was refunded: the order is fully refunded."""


@dataclass(frozen=True)
class ReceiverShare:
    """One receiver of an order: its split amount and what refunds took from it before
    settlement, in minor units."""

    merchant_id: str
    account_id: str
    split: int
    refunded: int = 0


@dataclass(frozen=True)
class ReceiverAmount:
    """What the settlement moves from the receiver's pending to its available (> 0)."""

    merchant_id: str
    account_id: str
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError("a receiver's settlement amount must be a positive integer")


def _whole(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidShares(f"{what}: must be a non-negative integer of minor units")
    return value


def settlement_amounts(shares: Iterable[ReceiverShare]) -> tuple[ReceiverAmount, ...]:
    """Each receiver's split less its refunds, in the split's order; receivers named twice are
    added up (one posting pair each). Raises NothingToSettle when nothing is left."""
    totals: dict[str, list[int]] = {}
    accounts: dict[str, str] = {}
    for share in shares:
        split = _whole(share.split, f"{share.merchant_id} split")
        refunded = _whole(share.refunded, f"{share.merchant_id} refunded")
        if refunded > split:
            raise InvalidShares(
                f"{share.merchant_id}: refunded {refunded} is more than its split {split}"
            )
        known = accounts.setdefault(share.merchant_id, share.account_id)
        if known != share.account_id:
            raise InvalidShares(f"{share.merchant_id}: two ledger accounts")
        total = totals.setdefault(share.merchant_id, [0, 0])
        total[0] += split
        total[1] += refunded
    if not totals:
        raise InvalidShares("an order has at least one receiver")
    amounts = tuple(
        ReceiverAmount(merchant_id, accounts[merchant_id], split - refunded)
        for merchant_id, (split, refunded) in totals.items()
        if split > refunded
    )
    if not amounts:
        raise NothingToSettle("every receiver's share was refunded")
    return amounts


def total(amounts: Iterable[ReceiverAmount]) -> int:
    return sum(a.amount for a in amounts)
