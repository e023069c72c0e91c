"""An order's split rule and how a refund is shared out among its parts. Pure, no I/O.

An order's money goes to its *parts*: each receiver's share, in the order the request named
them, and the platform's fee last. The rule is ``sum(receivers) + platformFee = amount``.

A refund takes from the parts too. Unless the platform names the amounts, it is shared out in
proportion to what is still refundable of each part: for the first refund that is the split
itself (the platform fee included), and a full refund of the rest always empties every part
exactly. Rounding is the largest-remainder method (Hamilton): each part first gets the floor
of its exact share, then the fen left over go one each to the parts with the largest
remainders; equal remainders go to the earlier part (receivers in the request's order, the
fee last). So the fen always add up to the refund, no part gets more than it has left, and no
part is off its exact share by a fen or more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MAX_RECEIVERS = 50  # WeChat Pay's profit sharing takes at most 50 receivers per order


class SplitMismatch(ValueError):
    """The parts do not add up to the whole; ``str(exc)`` says by how much."""


class RefundTooLarge(ValueError):
    """A refund asks for more than is left of the order or of one of its parts."""

    def __init__(self, message: str, part: int | None = None) -> None:
        super().__init__(message)
        self.part = part  # the position of the part it exceeds, None for the whole


class NotAReceiver(ValueError):
    """A refund names a merchant that is not a receiver of the order."""

    def __init__(self, merchant_id: str) -> None:
        super().__init__(f"{merchant_id} is not a receiver of this order")
        self.merchant_id = merchant_id


def check_split(amount: int, shares: Sequence[int], platform_fee: int) -> None:
    """``sum(shares) + platform_fee == amount``, or SplitMismatch naming the difference."""
    total = sum(shares) + platform_fee
    if total != amount:
        raise SplitMismatch(
            f"sum(splits.amount) + platformFee = {total}, but amount = {amount}: "
            "the receivers' amounts and the platform fee must add up to the order's amount"
        )


def allocate(refund: int, remaining: Sequence[int]) -> list[int]:
    """``refund`` fen shared out over parts that each have ``remaining[i]`` left (see the
    module's docstring). RefundTooLarge when the refund is more than everything left."""
    if refund <= 0:
        raise ValueError("a refund is a positive number of fen")
    if any(r < 0 for r in remaining):
        raise ValueError("what is left of a part is never negative")
    left = sum(remaining)
    if refund > left:
        raise RefundTooLarge(f"amount {refund} is more than the {left} left to refund")
    shares = [refund * r // left for r in remaining]
    # The remainders of refund * r / left, as numerators over ``left``: exact, no float.
    remainders = [refund * r - share * left for r, share in zip(remaining, shares, strict=True)]
    short = refund - sum(shares)  # < len(remaining): each part lost less than one fen
    by_remainder = sorted(range(len(remaining)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[:short]:
        shares[i] += 1
    return shares


def check_allocation(refund: int, amounts: Sequence[int], remaining: Sequence[int]) -> None:
    """Amounts the platform named per part: they add up to the refund and none is more than
    its part has left (RefundTooLarge naming the part), else SplitMismatch."""
    if len(amounts) != len(remaining):
        raise ValueError("one amount per part")
    if sum(amounts) != refund:
        raise SplitMismatch(
            f"the refund's splits and platformFee add up to {sum(amounts)}, but amount = {refund}"
        )
    for i, (asked, left) in enumerate(zip(amounts, remaining, strict=True)):
        if asked > left:
            raise RefundTooLarge(f"{asked} is more than the {left} left to refund", part=i)


def plan_refund(
    refund: int,
    parts: Sequence[tuple[str | None, int]],
    taken: Sequence[int],
    named: Mapping[str, int] | None = None,
    named_fee: int | None = None,
) -> list[int]:
    """Each part's share of a new refund of ``refund`` fen.

    ``parts``: (merchant id, or None for the platform fee; its amount) in the order's order;
    ``taken``: per part, what earlier refunds took and did not give back (PROCESSING or
    SUCCESS). ``named``: the amounts the platform gave per receiver (those it left out: 0) and
    ``named_fee`` the platform fee's, or None to share the refund out (``allocate``).
    """
    remaining = [amount - t for (_, amount), t in zip(parts, taken, strict=True)]
    left = sum(remaining)
    if refund > left:
        raise RefundTooLarge(f"amount {refund} is more than the {left} left to refund")
    if named is None:
        return allocate(refund, remaining)
    receivers = {merchant for merchant, _ in parts if merchant is not None}
    for merchant in named:
        if merchant not in receivers:
            raise NotAReceiver(merchant)
    amounts = [
        (named_fee or 0) if merchant is None else named.get(merchant, 0) for merchant, _ in parts
    ]
    check_allocation(refund, amounts, remaining)
    return amounts
