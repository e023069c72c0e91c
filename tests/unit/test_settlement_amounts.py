"""What a settlement moves per receiver: its split less what refunds took before settlement."""

from __future__ import annotations

import pytest

from fundhub.settlement.amounts import (
    InvalidShares,
    NothingToSettle,
    ReceiverAmount,
    ReceiverShare,
    settlement_amounts,
    total,
)


def share(merchant: str, split: int, refunded: int = 0) -> ReceiverShare:
    return ReceiverShare(merchant, f"acct-{merchant}", split, refunded)


def test_without_refunds_each_receiver_settles_its_split() -> None:
    amounts = settlement_amounts([share("A", 6000), share("B", 3000), share("C", 500)])
    assert amounts == (
        ReceiverAmount("A", "acct-A", 6000),
        ReceiverAmount("B", "acct-B", 3000),
        ReceiverAmount("C", "acct-C", 500),
    )
    assert total(amounts) == 9500


def test_refunds_before_settlement_are_taken_off_each_receiver() -> None:
    amounts = settlement_amounts([share("A", 6000, 1200), share("B", 3000, 600)])
    assert [(a.merchant_id, a.amount) for a in amounts] == [("A", 4800), ("B", 2400)]


def test_a_receiver_refunded_in_full_moves_nothing() -> None:
    amounts = settlement_amounts([share("A", 6000, 6000), share("B", 3000, 1)])
    assert [(a.merchant_id, a.amount) for a in amounts] == [("B", 2999)]


def test_an_order_refunded_in_full_has_nothing_to_settle() -> None:
    with pytest.raises(NothingToSettle):
        settlement_amounts([share("A", 6000, 6000), share("B", 3000, 3000)])


def test_a_receiver_named_twice_is_added_up() -> None:
    amounts = settlement_amounts([share("A", 100, 10), share("B", 50), share("A", 200, 20)])
    assert [(a.merchant_id, a.amount) for a in amounts] == [("A", 270), ("B", 50)]


def test_the_platform_fee_is_a_part_like_the_others() -> None:
    fee = ReceiverShare(None, "acct-platform-fee", 500, 100)
    amounts = settlement_amounts([share("A", 9500, 1900), fee])
    assert amounts == (
        ReceiverAmount("A", "acct-A", 7600),
        ReceiverAmount(None, "acct-platform-fee", 400),
    )


@pytest.mark.parametrize(
    "shares",
    [
        [share("A", 100, 101)],  # more refunded than split
        [share("A", -1)],
        [ReceiverShare("A", "acct", 100, True)],  # a bool is no amount
        [ReceiverShare("A", "acct", 1.0, 0)],  # type: ignore[arg-type]  # no float on money
        [ReceiverShare("A", "x", 100), ReceiverShare("B", "x", 100)],  # two owners, one account
        [],
    ],
)
def test_impossible_shares_are_refused(shares: list[ReceiverShare]) -> None:
    with pytest.raises(InvalidShares):
        settlement_amounts(shares)
