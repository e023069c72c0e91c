"""Double-entry rules, pure: balanced journal entries and their effect on account balances.

Storage mirrors this (postings table, deferred balance trigger, balance CHECK); these rules run
first so a bad entry is refused before any I/O.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from fundhub.common.ids import is_canonical_uuid, time_ordered_uuid

BANK_INFLOW = "bank-inflow"
# Money the bank credited to an account that may no longer take it, until reconciled.
BANK_SUSPENSE = "bank-suspense"
DEDUCTION_CLEARING = "deduction-clearing"


def system_account(purpose: str, currency: str) -> str:
    """Id of a system account; one per purpose and currency, its balance derived from postings."""
    return f"sys:{purpose}:{currency}"


class Bucket(StrEnum):
    AVAILABLE = "available"
    FROZEN = "frozen"
    PENDING = "pending"


_BUCKETS = tuple(Bucket)


class UnbalancedEntry(ValueError):
    """A journal entry whose postings do not sum to zero per currency (or has none)."""


class InsufficientFunds(Exception):
    """A non-negative account would go below zero in one bucket."""

    def __init__(self, account_id: str, bucket: Bucket, needed: int, had: int) -> None:
        super().__init__(f"account {account_id} {bucket}: needs {needed}, has {had}")
        self.account_id = account_id
        self.bucket = bucket
        self.needed = needed
        self.had = had


@dataclass(frozen=True)
class Posting:
    """One signed amount in minor units on one bucket of one account."""

    account_id: str
    bucket: Bucket
    currency: str
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ValueError("posting amount must be an integer number of minor units")
        if self.amount == 0:
            raise ValueError("posting amount must not be zero")
        if not self.account_id or not self.currency:
            raise ValueError("posting needs an account and a currency")
        object.__setattr__(self, "bucket", Bucket(self.bucket))


@dataclass(frozen=True)
class JournalEntry:
    entry_id: str  # a UUID (the journal_entries key)
    kind: str
    ref_type: str
    ref_id: str
    postings: tuple[Posting, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not is_canonical_uuid(self.entry_id):
            uuid.UUID(self.entry_id)  # ValueError early rather than at insert time
        object.__setattr__(self, "postings", tuple(self.postings))
        if not self.postings:
            raise UnbalancedEntry(f"entry {self.entry_id} has no postings")
        unbalanced = {
            cur: total for cur, total in totals_by_currency(self.postings).items() if total
        }
        if unbalanced:
            raise UnbalancedEntry(f"entry {self.entry_id} does not balance: {unbalanced}")


def totals_by_currency(postings: Iterable[Posting]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.currency] += posting.amount
    return dict(totals)


@dataclass
class Balance:
    """A customer account's buckets, as in ``account_balances``."""

    account_id: str
    currency: str
    available: int = 0
    frozen: int = 0
    pending: int = 0
    allow_negative: bool = False

    @property
    def total(self) -> int:
        return self.available + self.frozen + self.pending

    def bucket(self, bucket: Bucket) -> int:
        return int(getattr(self, bucket.value))


def apply_entry(balances: Mapping[str, Balance], entry: JournalEntry) -> dict[str, Balance]:
    """New balances of the accounts in ``balances`` that ``entry`` touches.

    Accounts not in the mapping are system accounts (derived balances) and are skipped. Deltas
    are netted per bucket first, as one committed transaction would see them.
    """
    deltas: dict[str, dict[Bucket, int]] = defaultdict(lambda: defaultdict(int))
    for posting in entry.postings:
        balance = balances.get(posting.account_id)
        if balance is None:
            continue
        if posting.currency != balance.currency:
            raise ValueError(
                f"posting in {posting.currency} on account {posting.account_id}"
                f" held in {balance.currency}"
            )
        deltas[posting.account_id][posting.bucket] += posting.amount

    result: dict[str, Balance] = {}
    for account_id, by_bucket in deltas.items():
        balance = balances[account_id]
        after = {bucket: balance.bucket(bucket) + by_bucket.get(bucket, 0) for bucket in _BUCKETS}
        for bucket, delta in by_bucket.items():
            if delta < 0 and after[bucket] < 0 and not balance.allow_negative:
                raise InsufficientFunds(
                    account_id, bucket, needed=-delta, had=balance.bucket(bucket)
                )
        result[account_id] = replace(
            balance,
            available=after[Bucket.AVAILABLE],
            frozen=after[Bucket.FROZEN],
            pending=after[Bucket.PENDING],
        )
    return result


# --- entry builders --------------------------------------------------------------------------


def move(
    source: str,
    source_bucket: Bucket,
    target: str,
    target_bucket: Bucket,
    currency: str,
    amount: int,
) -> tuple[Posting, ...]:
    """The two postings that move ``amount`` between buckets; none for a zero amount."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError("amount must be a non-negative integer")
    if amount == 0:
        return ()
    return (
        Posting(source, source_bucket, currency, -amount),
        Posting(target, target_bucket, currency, amount),
    )


def credit(
    account_id: str,
    currency: str,
    amount: int,
    *,
    source: str,
    bucket: Bucket = Bucket.AVAILABLE,
) -> tuple[Posting, ...]:
    """Money arriving on ``account_id`` from the available bucket of ``source``."""
    return move(source, Bucket.AVAILABLE, account_id, bucket, currency, amount)


def debit(
    account_id: str,
    currency: str,
    amount: int,
    *,
    target: str,
    bucket: Bucket = Bucket.AVAILABLE,
) -> tuple[Posting, ...]:
    """Money leaving ``account_id`` to the available bucket of ``target``."""
    return move(account_id, bucket, target, Bucket.AVAILABLE, currency, amount)


def freeze(account_id: str, currency: str, amount: int) -> tuple[Posting, ...]:
    return move(account_id, Bucket.AVAILABLE, account_id, Bucket.FROZEN, currency, amount)


def unfreeze(account_id: str, currency: str, amount: int) -> tuple[Posting, ...]:
    return move(account_id, Bucket.FROZEN, account_id, Bucket.AVAILABLE, currency, amount)


def new_entry_id() -> str:
    """Time-ordered, so the journal's indexes on entry ids grow at one end."""
    return time_ordered_uuid()
