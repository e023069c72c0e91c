"""What a settlement moves for each part of an order's split. Pure.

A paid order's money waits in ``pending``: each receiver's share on the receiver's account, and
the platform's fee on the platform-fee account (the order's parts). Refunds made before the
order settles take their part back from those buckets, so what is left to move to
``available`` is each part's amount less what refunds took from it. A part left with nothing
moves nothing (an entry holds no zero posting); an order whose parts are all left with nothing
is fully refunded and has nothing to settle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class InvalidShares(ValueError):
    """Shares that cannot come from a valid order (a refund above the part, a negative one)."""


class NothingToSettle(ValueError):
    """Every part was refunded: the order is fully refunded."""


@dataclass(frozen=True)
class ReceiverShare:
    """One part of an order: a receiver's share (``merchant_id``) or the platform fee (None),
    its amount, and what refunds took from it before settlement, in minor units."""

    merchant_id: str | None
    account_id: str
    split: int
    refunded: int = 0


@dataclass(frozen=True)
class ReceiverAmount:
    """What the settlement moves from the account's pending to its available (> 0)."""

    merchant_id: str | None
    account_id: str
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError("a settlement amount must be a positive integer of minor units")


def _whole(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidShares(f"{what}: must be a non-negative integer of minor units")
    return value


def settlement_amounts(shares: Iterable[ReceiverShare]) -> tuple[ReceiverAmount, ...]:
    """Each part less its refunds, in the order's order; parts on one account are added up
    (one posting pair each). Raises NothingToSettle when nothing is left."""
    totals: dict[str, list[int]] = {}
    owners: dict[str, str | None] = {}
    for share in shares:
        who = share.merchant_id or "platform fee"
        split = _whole(share.split, f"{who} split")
        refunded = _whole(share.refunded, f"{who} refunded")
        if refunded > split:
            raise InvalidShares(f"{who}: refunded {refunded} is more than its part {split}")
        owner = owners.setdefault(share.account_id, share.merchant_id)
        if owner != share.merchant_id:
            raise InvalidShares(f"account {share.account_id}: the part of two receivers")
        total = totals.setdefault(share.account_id, [0, 0])
        total[0] += split
        total[1] += refunded
    if not totals:
        raise InvalidShares("an order has at least one part")
    amounts = tuple(
        ReceiverAmount(owners[account_id], account_id, split - refunded)
        for account_id, (split, refunded) in totals.items()
        if split > refunded
    )
    if not amounts:
        raise NothingToSettle("every part of the order was refunded")
    return amounts


def total(amounts: Iterable[ReceiverAmount]) -> int:
    return sum(a.amount for a in amounts)
