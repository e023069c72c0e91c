"""What the bank sends, as sequences of ``TransferSpec``: pure and deterministic for a seed.

Every generator takes its randomness from the ``random.Random`` it is given, so one seed gives
one sequence. Record ids come from a caller-chosen prefix: the same seed with another prefix
gives the same amounts and accounts for records the gateway has never seen.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from fundhub.bank_simulator.notifications import TransferSpec

# What a payer writes as the purpose of a transfer (资金用途); only for variety.
_USES = ("货款", "服务费", "充值", "结算款", "预付款")


def demo_accounts(count: int, prefix: str = "6222020") -> list[str]:
    """Stable receiving account numbers, the same on every run so balances accumulate."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return [f"{prefix}{number:09d}" for number in range(1, count + 1)]


def arrivals(
    rng: random.Random,
    n: int,
    accounts: Sequence[str],
    min_amount: int,
    max_amount: int,
    *,
    record_prefix: str = "R",
    first_number: int = 1,
    at: datetime | None = None,
) -> list[TransferSpec]:
    """``n`` incoming transfers (deduct_status 0) to accounts drawn from ``accounts``."""
    if n < 0:
        raise ValueError("n must not be negative")
    if not accounts:
        raise ValueError("at least one account is needed")
    if not 0 < min_amount <= max_amount:
        raise ValueError("amounts need 0 < min_amount <= max_amount")
    specs = []
    for number in range(first_number, first_number + n):
        specs.append(
            TransferSpec(
                record_id=f"{record_prefix}{number:08d}",
                in_acct_no=rng.choice(accounts),
                trans_amount=rng.randint(min_amount, max_amount),
                trans_time=at,
                use_ex=rng.choice(_USES),
            )
        )
    return specs


def status_changes(spec: TransferSpec) -> list[TransferSpec]:
    """What follows an arrival when the linked card deducts it: in progress (6), then done (1)."""
    return [replace(spec, deduct_status="6"), replace(spec, deduct_status="1")]


def lifecycle(spec: TransferSpec) -> list[TransferSpec]:
    """One record's full life: arrival (0), deduction in progress (6), deducted (1)."""
    return [replace(spec, deduct_status="0"), *status_changes(spec)]


def reversal(spec: TransferSpec) -> TransferSpec:
    """The bank's notice that the transfer was reversed (被冲正, reverse_flag 1)."""
    return replace(spec, reverse_flag="1")


def duplicated(specs: Sequence[TransferSpec], copies: int) -> list[TransferSpec]:
    """Each notice ``copies`` times in a row (1 = no duplicates), as a retrying bank sends them."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    return [spec for spec in specs for _ in range(copies)]


def shuffled(
    rng: random.Random, specs: Sequence[TransferSpec], keep_record_order: bool = True
) -> list[TransferSpec]:
    """A random order; by default each record's own notices keep their relative order.

    The records are interleaved at random but, for one record, 0 still comes before 6 before 1.
    With ``keep_record_order=False`` even that is shuffled (the bank delivering out of order).
    """
    order = list(specs)
    rng.shuffle(order)
    if not keep_record_order:
        return order
    slots: dict[str, list[int]] = defaultdict(list)
    for position, spec in enumerate(order):
        slots[spec.record_id].append(position)
    queues: dict[str, list[TransferSpec]] = defaultdict(list)
    for spec in specs:
        queues[spec.record_id].append(spec)
    result: list[TransferSpec] = list(order)
    for record_id, positions in slots.items():
        for position, spec in zip(positions, queues[record_id], strict=True):
            result[position] = spec
    return result


def bursts(
    rng: random.Random, specs: Sequence[TransferSpec], min_size: int, max_size: int
) -> list[list[TransferSpec]]:
    """Cut a sequence into consecutive bursts of random size, to be sent with pauses between."""
    if not 0 < min_size <= max_size:
        raise ValueError("sizes need 0 < min_size <= max_size")
    result: list[list[TransferSpec]] = []
    start = 0
    while start < len(specs):
        size = rng.randint(min_size, max_size)
        result.append(list(specs[start : start + size]))
        start += size
    return result


@dataclass(frozen=True, slots=True)
class Phase:
    """Notices sent together; a phase starts only when the previous one is delivered."""

    name: str
    specs: list[TransferSpec] = field(default_factory=list)


def plan_transfers(
    rng: random.Random,
    count: int,
    accounts: Sequence[str],
    min_amount: int,
    max_amount: int,
    *,
    duplicates: int = 1,
    lifecycle: bool = False,
    reversal_rate: float = 0.0,
    record_prefix: str = "R",
    at: datetime | None = None,
    shuffle: bool = True,
) -> list[Phase]:
    """A whole scenario, phase by phase, so that one record's notices arrive in order.

    Phases: ``arrivals`` (every record, status 0), then with ``lifecycle`` ``processing`` (6)
    and ``deducted`` (1), then ``reversals`` (reverse_flag 1). A record picked for reversal
    (probability ``reversal_rate``) is not also deducted: a transfer the bank takes back was
    never swept. Each notice is sent ``duplicates`` times, and within a phase the order is
    shuffled, so duplicates of one notice race each other at the gateway.
    """
    if not 0.0 <= reversal_rate <= 1.0:
        raise ValueError("reversal_rate must be within 0..1")
    records = arrivals(
        rng, count, accounts, min_amount, max_amount, record_prefix=record_prefix, at=at
    )
    reversed_ids = {spec.record_id for spec in records if rng.random() < reversal_rate}
    deducted = [spec for spec in records if lifecycle and spec.record_id not in reversed_ids]
    stages = [
        ("arrivals", records),
        ("processing", [replace(spec, deduct_status="6") for spec in deducted]),
        ("deducted", [replace(spec, deduct_status="1") for spec in deducted]),
        ("reversals", [reversal(spec) for spec in records if spec.record_id in reversed_ids]),
    ]
    phases = []
    for name, specs in stages:
        if not specs:
            continue
        copies = duplicated(specs, duplicates)
        phases.append(Phase(name, shuffled(rng, copies) if shuffle else copies))
    return phases


@dataclass(slots=True)
class DemoFeed:
    """The live demo stream: one arrival per tick, some followed a few ticks later.

    About ``follow_up_rate`` of arrivals later go to 6 and then 1; about ``reversal_rate`` are
    later reversed instead. Amounts are whole yuan so balances read easily.
    """

    rng: random.Random
    accounts: Sequence[str]
    record_prefix: str
    min_yuan: int = 10
    max_yuan: int = 5_000
    follow_up_rate: float = 0.5
    reversal_rate: float = 0.1
    min_delay_ticks: int = 1
    max_delay_ticks: int = 4
    _tick: int = field(default=0, init=False)
    _pending: list[tuple[int, int, TransferSpec]] = field(default_factory=list, init=False)
    _serial: int = field(default=0, init=False)

    def tick(self, now: datetime) -> list[TransferSpec]:
        """The notices due now: earlier records' follow-ups first, then one new arrival."""
        self._tick += 1
        due = sorted(item for item in self._pending if item[0] <= self._tick)
        self._pending = [item for item in self._pending if item[0] > self._tick]
        (drawn,) = arrivals(
            self.rng,
            1,
            self.accounts,
            self.min_yuan,
            self.max_yuan,
            record_prefix=self.record_prefix,
            first_number=self._tick,
            at=now,
        )
        spec = replace(drawn, trans_amount=drawn.trans_amount * 100)
        draw = self.rng.random()
        if draw < self.reversal_rate:
            self._schedule(self._delay(), reversal(spec))
        elif draw < self.reversal_rate + self.follow_up_rate:
            processing, deducted = status_changes(spec)
            first = self._delay()
            self._schedule(first, processing)
            self._schedule(first + self._delay(), deducted)
        return [item[2] for item in due] + [spec]

    def _delay(self) -> int:
        return self.rng.randint(self.min_delay_ticks, self.max_delay_ticks)

    def _schedule(self, delay: int, spec: TransferSpec) -> None:
        self._serial += 1
        self._pending.append((self._tick + delay, self._serial, spec))
