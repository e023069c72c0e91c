"""What an order's money does in the ledger, entry by entry. Pure, no I/O.

    paid          channel clearing (available) -> each part's account, pending
    refund held   each part's account, pending (before settlement) or available (after) -> frozen
    refunded      each part's account, frozen -> channel clearing (available)
    given back    each part's account, frozen -> where the order's share lives now

The channel's clearing account (``sys:<channel>-clearing:<currency>``) stands for the money at
the channel: it goes negative by what was paid and back up by what was refunded, so its balance
is always -(paid - refunded). A refund's money stays frozen on the parts' own accounts while the
channel works on it: it is still theirs until the channel says it left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fundhub.channels.events import Channel
from fundhub.ledger.rules import Bucket, JournalEntry, Posting, move, system_account

ENTRY_KIND = "order"
REF_TYPE_ORDER = "order"
REF_TYPE_REFUND = "order-refund"


def fee_account(key_id: str, currency: str) -> str:
    """The platform's fee account: a customer account per tenant (API key) and currency, so
    its balance API shows it (``fee_ak_…_CNY``, within the API's 32 characters)."""
    return f"fee_{key_id}_{currency}"


def clearing_account(channel: Channel, currency: str) -> str:
    """The channel's clearing account: one system account per channel and currency."""
    return system_account(f"{channel.value.lower()}-clearing", currency)


@dataclass(frozen=True)
class Part:
    """Where a part of an order's money goes: a receiver's share, or the platform fee."""

    position: int
    merchant_id: str | None  # None for the platform fee
    account_id: str
    amount: int


def paid(
    entry_id: str, order_id: str, channel: Channel, currency: str, parts: Sequence[Part]
) -> JournalEntry:
    """Clearing -> every part's pending, in one balanced entry."""
    clearing = clearing_account(channel, currency)
    postings: list[Posting] = []
    for part in parts:
        postings.extend(
            move(clearing, Bucket.AVAILABLE, part.account_id, Bucket.PENDING, currency, part.amount)
        )
    return _entry(entry_id, REF_TYPE_ORDER, order_id, postings, f"order {order_id}: paid")


def held(
    entry_id: str,
    refund_id: str,
    currency: str,
    parts: Sequence[Part],
    allocation: Sequence[int],
    source: Bucket,
) -> JournalEntry:
    """Each part's share of the refund, from ``source`` to frozen on its own account."""
    postings: list[Posting] = []
    for part, amount in zip(parts, allocation, strict=True):
        postings.extend(
            move(part.account_id, source, part.account_id, Bucket.FROZEN, currency, amount)
        )
    return _entry(
        entry_id, REF_TYPE_REFUND, refund_id, postings, f"refund {refund_id}: held ({source})"
    )


def refunded(
    entry_id: str,
    refund_id: str,
    channel: Channel,
    currency: str,
    parts: Sequence[Part],
    allocation: Sequence[int],
) -> JournalEntry:
    """The channel paid the refund: each part's frozen share -> clearing."""
    clearing = clearing_account(channel, currency)
    postings: list[Posting] = []
    for part, amount in zip(parts, allocation, strict=True):
        postings.extend(
            move(part.account_id, Bucket.FROZEN, clearing, Bucket.AVAILABLE, currency, amount)
        )
    return _entry(entry_id, REF_TYPE_REFUND, refund_id, postings, f"refund {refund_id}: refunded")


def given_back(
    entry_id: str,
    refund_id: str,
    currency: str,
    parts: Sequence[Part],
    allocation: Sequence[int],
    target: Bucket,
) -> JournalEntry:
    """The refund did not happen: each part's frozen share back to ``target``."""
    postings: list[Posting] = []
    for part, amount in zip(parts, allocation, strict=True):
        postings.extend(
            move(part.account_id, Bucket.FROZEN, part.account_id, target, currency, amount)
        )
    return _entry(entry_id, REF_TYPE_REFUND, refund_id, postings, f"refund {refund_id}: given back")


def _entry(
    entry_id: str, ref_type: str, ref_id: str, postings: Sequence[Posting], description: str
) -> JournalEntry:
    return JournalEntry(
        entry_id=entry_id,
        kind=ENTRY_KIND,
        ref_type=ref_type,
        ref_id=ref_id,
        postings=tuple(postings),
        description=description,
    )
