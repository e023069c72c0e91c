"""The acceptance scenario of the depository platform, every part a real process (gateway,
notify-ingest, payment-worker, callback dispatcher, the bank simulator's depository and payout
desk, the channel simulator's WeChat Pay and Alipay), driven as a platform and its payers would:

1. 50 merchants registered through the API, approved by the depository, each with a settlement
   account verified by the micro-deposit the bank made;
2. 5,000 orders with 3-way splits and a platform fee (sometimes 0), half through each channel,
   each paid at the channel simulator, whose notices come late (0-400 ms), out of order and a
   quarter of them twice; notify-ingest (the channel notifications' consumer) is SIGKILLed
   while they stream. 40 % were paid "yesterday" (the payer paid then, the notice comes now),
   so the T+1 scheduler settles them unasked (the cut-off is one that passed today);
3. 10 % of the orders refunded, in full, in part, in two steps or with each receiver's amount
   named, before settlement (from ``pending``: 200 never settled, 100 then confirmed) and after
   it (from ``available``: 100 confirmed, 100 settled by the scheduler); 30 % confirmed at once
   by ``POST /v1/orders/{orderNo}/settle`` (a fully refunded one answers E041). In the middle
   of it 10 merchants send new material for review and payment-worker (the consumers of refund
   commands, split results and merchant commands and results, and the scheduler) is SIGKILLed;
4. withdrawals from 20 merchants to their verified accounts;
5. the payment notices of 200 orders sent again, after their refunds and settlements.

Then every fen is accounted for, from the test's own plan and answers and the channel
simulator's book: each channel's clearing = -(paid - refunded); each merchant's pending,
available and frozen = its shares - its refunds - its withdrawals, bucket by bucket, as its
orders settled or not; the platform-fee account the same with the fees; every entry balanced,
nothing negative; each order, refund, settlement, withdrawal and material review reached its
final state exactly once (one entry each, one callback each, no callback twice); no exception,
nothing left undone. Each phase's time and each process's CPU time in it are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from support.env import ModuleEnv
from support.kafka import group_lag
from support.ledger import assert_ledger_invariants
from support.merchants import materials
from support.onboarding import Onboarded, register, verify_accounts, wait_active, wait_rows
from support.platform import Platform, depository_platform
from support.processes import cpu_seconds

from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.common.topics import topics
from fundhub.ledger.rules import system_account
from fundhub.merchants.consumers import COMMANDS_CONSUMER as MERCHANT_COMMANDS
from fundhub.merchants.consumers import RESULTS_CONSUMER as MERCHANT_RESULTS
from fundhub.orders.notifications import CONSUMER as CHANNEL_EVENTS
from fundhub.orders.postings import fee_account
from fundhub.orders.refunds import CONSUMER as REFUND_COMMANDS
from fundhub.settlement.results import CONSUMER as SPLIT_RESULTS
from fundhub.webhooks.store import CONSUMER as CALLBACKS

pytestmark = pytest.mark.slow

MERCHANTS = 50
ORDERS = 1_000
IN_FLIGHT = 48
SEED = 20261130
YESTERDAY, CONFIRMED, UNSETTLED = "Y", "C", "U"


@dataclass
class PlannedRefund:
    refund_no: str
    amount: int
    after_settlement: bool
    named: tuple[int, ...] | None = None  # each receiver's amount, then the fee; None: shared
    refund_id: str = ""
    allocation: tuple[int, ...] = ()  # as answered: each receiver's, then the fee

    def body(self, order: PlannedOrder, merchants: list[Onboarded]) -> dict[str, Any]:
        body: dict[str, Any] = {"refundNo": self.refund_no, "amount": self.amount}
        if self.named is not None:
            body["splits"] = [
                {"merchantId": merchants[m].merchant_id, "amount": a}
                for m, a in zip(order.receivers, self.named, strict=False)
            ]
            body["platformFee"] = self.named[-1]
        return body


@dataclass
class PlannedOrder:
    order_no: str
    channel: str
    receivers: tuple[int, ...]  # indexes into the merchants
    shares: tuple[int, ...]
    fee: int
    group: str
    refunds: list[PlannedRefund] = field(default_factory=list)
    order_id: str = ""
    confirm: str = ""  # the answer's code to a confirmation, "" for none asked

    @property
    def amount(self) -> int:
        return sum(self.shares) + self.fee

    @property
    def parts(self) -> tuple[int, ...]:
        return (*self.shares, self.fee)

    def body(self, merchants: list[Onboarded], notify_url: str) -> dict[str, Any]:
        return {
            "orderNo": self.order_no,
            "amount": self.amount,
            "currency": "CNY",
            "channel": self.channel,
            "description": "depository scenario",
            "splits": [
                {"merchantId": merchants[m].merchant_id, "amount": a}
                for m, a in zip(self.receivers, self.shares, strict=True)
            ],
            "platformFee": self.fee,
            "notifyUrl": notify_url,
        }


def plan(rng: random.Random) -> list[PlannedOrder]:
    """The orders: channels alternate; 40 % paid yesterday, 30 % to confirm, 30 % left
    unsettled; 10 % refunded (U before settlement, C half before and half after, Y after)."""
    orders = []
    for i in range(ORDERS):
        receivers = tuple(rng.sample(range(MERCHANTS), 3))
        shares = tuple(rng.randint(100, 20_000) for _ in receivers)
        fee = 0 if i % 7 == 0 else rng.randint(1, 999)
        group = YESTERDAY if i % 10 < 4 else CONFIRMED if i % 10 < 7 else UNSETTLED
        channel = "WECHATPAY" if i % 2 == 0 else "ALIPAY"
        orders.append(PlannedOrder(f"SC-{SEED}-{i:05d}", channel, receivers, shares, fee, group))
    by_group: dict[str, list[PlannedOrder]] = defaultdict(list)
    for order in orders:
        by_group[order.group].append(order)
    confirmed = rng.sample(by_group[CONFIRMED], ORDERS // 25)
    refunded = [
        (rng.sample(by_group[UNSETTLED], ORDERS // 25), False),
        (confirmed[: ORDERS // 50], False),
        (confirmed[ORDERS // 50 :], True),
        (rng.sample(by_group[YESTERDAY], ORDERS // 50), True),
    ]
    for picked, after_settlement in refunded:
        for n, order in enumerate(picked):
            order.refunds = refunds_of(rng, order, after_settlement, n)
    return orders


def refunds_of(rng: random.Random, order: PlannedOrder, after: bool, n: int) -> list[PlannedRefund]:
    """Full, partial, two partials (the second the rest), or partial with the amounts named."""
    base = f"RF-{order.order_no}"
    kind = n % 4
    if kind == 0:
        return [PlannedRefund(f"{base}-1", order.amount, after)]
    if kind == 1:
        return [PlannedRefund(f"{base}-1", rng.randint(1, order.amount - 1), after)]
    if kind == 2:
        first = rng.randint(1, order.amount - 1)
        return [
            PlannedRefund(f"{base}-1", first, after),
            PlannedRefund(f"{base}-2", order.amount - first, after),
        ]
    named = (*(rng.randint(1, share // 2) for share in order.shares), rng.randint(0, order.fee))
    return [PlannedRefund(f"{base}-1", sum(named), after, named)]


class Timings:
    """Each phase's wall time and the CPU time each process spent in it (where time goes)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.started = self._last = time.monotonic()
        self.phases: list[tuple[str, float, dict[str, float]]] = []
        self.figures: dict[str, Any] = {}
        self._cpu: dict[str, float] = {}

    async def _sample(self) -> dict[str, float]:
        sample = {s.name: s.cpu_seconds() for s in self.platform.services()}
        sample["test"] = time.process_time()
        sample["postgres"] = await database_cpu_seconds(self.platform)
        return sample

    async def start(self) -> None:
        self._cpu = await self._sample()

    async def mark(self, phase: str) -> None:
        now, cpu = time.monotonic(), await self._sample()
        # A process started again counts from zero.
        spent = {k: v - self._cpu[k] if v >= self._cpu[k] else v for k, v in cpu.items()}
        self.phases.append((phase, now - self._last, spent))
        self._last, self._cpu = now, cpu

    def report(self) -> str:
        lines = []
        for phase, seconds, spent in self.phases:
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items(), key=lambda i: -i[1]))
            lines.append(f"  {phase:<58} {seconds:6.1f} s   CPU s: {cpu}")
        lines.append(f"  {'total':<58} {time.monotonic() - self.started:6.1f} s")
        lines.extend(f"  {name}: {value}" for name, value in self.figures.items())
        return "\n".join(lines)


async def database_cpu_seconds(platform: Platform) -> float:
    """CPU time of the Postgres backends serving the module's database now (Linux ``/proc``;
    backends of connections closed meanwhile are not counted)."""
    pids = await platform.env.pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )
    return sum(cpu_seconds(row["pid"]) for row in pids)


def passed_cutoff() -> str:
    """A cut-off (GMT+8) that passed today at most 10 minutes ago, or 00:00: yesterday's
    payments are due now, today's not before the next one, a day away (a run at any hour)."""
    now = utcnow().astimezone(BANK_TZ)
    moment = max(now - timedelta(minutes=10), now.replace(hour=0, minute=0))
    return moment.strftime("%H:%M")


@pytest.fixture(scope="module")
async def platform(env: ModuleEnv) -> AsyncIterator[Platform]:
    worker = {"FUNDHUB_SETTLEMENT_CUTOFF": passed_cutoff()}
    channel = ("--refund-delay", "20,200", "--duplicate-rate", "0.25", "--delay", "0,400")
    async with depository_platform(env, worker, *channel) as running:
        yield running


async def bounded(limit: int, work: list[Awaitable[None]]) -> None:
    """Run ``work``, at most ``limit`` at a time; the first failure fails the lot."""
    gate = asyncio.Semaphore(limit)

    async def one(item: Awaitable[None]) -> None:
        async with gate:
            await item

    await asyncio.gather(*(one(w) for w in work))


async def count(platform: Platform, sql: str, *args: Any) -> int:
    value: int = await platform.env.pool.fetchval(sql, *args)
    return value


async def kill_when(
    platform: Platform,
    service_name: str,
    reached: Callable[[], Awaitable[bool]],
    log: Timings,
    before: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """SIGKILL the service once ``reached`` holds (work in flight), start it again.
    ``before``: more work set going just before the kill."""
    service = {"notify-ingest": platform.ingest, "payment-worker": platform.worker}[service_name]
    while not await reached():  # noqa: ASYNC110 (a database condition, not an event)
        await asyncio.sleep(0.2)
    if before is not None:
        await before()
    killed_at = time.monotonic()
    service.kill()
    await asyncio.sleep(0.5)  # the gateway and the bank keep going meanwhile
    service.start()
    await service.wait_ready()
    log.figures[f"{service_name} SIGKILLed, back ready after"] = (
        f"{time.monotonic() - killed_at:.1f} s"
    )


class Retried:
    """How often the gateway asked to be asked again (503 E013, E044, E045)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latencies: dict[str, list[float]] = defaultdict(list)

    def percentiles(self) -> dict[str, str]:
        out = {}
        for name, values in self.latencies.items():
            ordered = sorted(values)
            p50, p95 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)]
            out[name] = f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
        return out


async def create_and_pay(
    platform: Platform,
    order: PlannedOrder,
    merchants: list[Onboarded],
    yesterday: str,
    retried: Retried,
) -> None:
    body = order.body(merchants, platform.notify_url)
    for attempt in range(20):
        sent = time.monotonic()
        answer = await platform.call("POST", "/v1/orders", body)
        retried.latencies["POST /v1/orders"].append(time.monotonic() - sent)
        if answer.status != 503:
            break
        retried.counts["order 503"] += 1
        await asyncio.sleep(0.2 * (attempt + 1))
    assert answer.status == 200, answer.body
    assert answer.body["state"] == "AWAITING_PAYMENT", answer.body
    order.order_id = answer.body["orderId"]
    query = {"paidAt": yesterday} if order.group == YESTERDAY else None
    sent = time.monotonic()
    paid = await platform.sim(
        platform.channels, "POST", f"/sim/{order.channel.lower()}/pay/{order.order_id}",
        params=query,
    )  # fmt: skip
    retried.latencies["payer pays"].append(time.monotonic() - sent)
    assert paid["paidNow"], paid


async def ask_refund(
    platform: Platform,
    order: PlannedOrder,
    refund: PlannedRefund,
    merchants: list[Onboarded],
    retried: Retried,
) -> None:
    path = f"/v1/orders/{order.order_no}/refunds"
    for _ in range(200):
        answer = await platform.call("POST", path, refund.body(order, merchants))
        if answer.code not in ("E044_SETTLEMENT_IN_PROGRESS", "E013_UNAVAILABLE"):
            break
        retried.counts[f"refund {answer.code}"] += 1
        await asyncio.sleep(0.2)
    assert answer.status == 202, answer.body
    assert answer.body["state"] == "PROCESSING"
    refund.refund_id = answer.body["refundId"]
    refund.allocation = (*(s["amount"] for s in answer.body["splits"]), answer.body["platformFee"])
    assert sum(refund.allocation) == refund.amount
    if refund.named is not None:
        assert refund.allocation == refund.named[: len(refund.allocation)]


async def confirm(platform: Platform, order: PlannedOrder, retried: Retried) -> None:
    """Settle now; a fully refunded order answers E041 (nothing to settle)."""
    path = f"/v1/orders/{order.order_no}/settle"
    for _ in range(200):
        answer = await platform.call("POST", path)
        if answer.code not in ("E045_REFUND_IN_PROGRESS", "E013_UNAVAILABLE"):
            break
        retried.counts[f"settle {answer.code}"] += 1
        await asyncio.sleep(0.2)
    fully_refunded = sum(r.amount for r in order.refunds if not r.after_settlement)
    if fully_refunded == order.amount:
        assert answer.code == "E041_ORDER_FULLY_REFUNDED", answer.body
    else:
        assert answer.status == 202, answer.body
        assert answer.body["trigger"] == "CONFIRMED"
    order.confirm = answer.code or "OK"


async def ask_refunds(
    platform: Platform,
    order: PlannedOrder,
    merchants: list[Onboarded],
    retried: Retried,
    after_settlement: bool,
) -> None:
    """The order's refunds of that side of its settlement, one after the other."""
    for refund in order.refunds:
        if refund.after_settlement == after_settlement:
            await ask_refund(platform, order, refund, merchants, retried)


async def refunds_then_confirm(
    platform: Platform, order: PlannedOrder, merchants: list[Onboarded], retried: Retried
) -> None:
    await ask_refunds(platform, order, merchants, retried, after_settlement=False)
    await confirm(platform, order, retried)


async def wait_settled(platform: Platform, orders: list[PlannedOrder], timeout_s: float) -> None:
    await wait_rows(
        platform,
        "SELECT count(*) FROM orders WHERE order_id = ANY($1) AND settled_at IS NOT NULL",
        [o.order_id for o in orders],
        timeout_s,
    )


async def quiet(platform: Platform, timeout_s: float = 90) -> None:
    """Nothing left undone: the simulators' notices delivered, the consumers caught up, no
    order, refund, settlement, payout or callback on its way."""
    names = topics(platform.env.settings)
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await platform.sim(platform.channels, "GET", "/sim/stats")
        lags = [
            await group_lag(platform.env.settings, names.group(group), topic)
            for group, topic in (
                (CHANNEL_EVENTS, names.channel_notifications),
                (REFUND_COMMANDS, names.order_commands),
                (SPLIT_RESULTS, names.bank_split_results),
                (MERCHANT_COMMANDS, names.merchant_commands),
                (MERCHANT_RESULTS, names.bank_merchant_results),
                (CALLBACKS, names.client_callbacks),
            )
        ]
        busy = await count(
            platform,
            "SELECT (SELECT count(*) FROM orders WHERE state NOT IN ('PAID', 'FAILED', 'CLOSED'))"
            " + (SELECT count(*) FROM order_refunds WHERE state = 'PROCESSING')"
            " + (SELECT count(*) FROM settlements WHERE finished_at IS NULL)"
            " + (SELECT count(*) FROM payouts WHERE state = 'PROCESSING')"
            " + (SELECT count(*) FROM callback_deliveries WHERE status <> 'DELIVERED')"
            " + (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
        )
        if stats["pendingTasks"] == 0 and not any(lags) and busy == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not quiet: {stats}, lags {lags}, {busy} busy")
        await asyncio.sleep(0.3)


async def test_fifty_merchants_five_thousand_orders_every_fen_accounted_for(
    platform: Platform,
) -> None:
    rng = random.Random(SEED)
    log = Timings(platform)
    await log.start()
    retried = Retried()

    # 1. Merchants.
    registered = await register(platform, MERCHANTS)
    await wait_active(platform, registered)
    merchants = await verify_accounts(platform, registered)
    await log.mark(f"{MERCHANTS} merchants registered, approved, accounts verified")

    # 2. Orders created and paid, notify-ingest SIGKILLed while the notices stream.
    orders = plan(rng)
    yesterday = (utcnow() - timedelta(days=1)).isoformat(timespec="seconds")
    ids_paid = "SELECT count(*) FROM orders WHERE state = 'PAID'"

    async def a_third_paid() -> bool:
        return await count(platform, ids_paid) >= ORDERS // 3

    killing = asyncio.create_task(kill_when(platform, "notify-ingest", a_third_paid, log))
    started = time.monotonic()
    await bounded(
        IN_FLIGHT, [create_and_pay(platform, o, merchants, yesterday, retried) for o in orders]
    )
    created_s = time.monotonic() - started
    await killing
    await wait_rows(
        platform,
        "SELECT count(*) FROM orders WHERE order_id = ANY($1) AND state = 'PAID'",
        [o.order_id for o in orders],
        timeout_s=120,
    )
    paid_s = time.monotonic() - started
    log.figures["orders created and paid at the channel"] = f"{ORDERS / created_s:.0f}/s"
    log.figures["orders paid end to end (ledger)"] = f"{ORDERS / paid_s:.0f}/s"
    await log.mark(f"{ORDERS} orders created and paid (1 SIGKILL of notify-ingest)")

    # 3. Refunds before settlement, confirmations, payment-worker SIGKILLed in the middle (just
    #    after 10 merchants sent new material for review: the merchants' consumers have work in
    #    flight too); then refunds after settlement.
    by_group: dict[str, list[PlannedOrder]] = defaultdict(list)
    for order in orders:
        by_group[order.group].append(order)
    before = [o for o in orders if o.refunds and not o.refunds[0].after_settlement]
    to_confirm = by_group[CONFIRMED]
    held = "SELECT count(*) FROM order_refunds WHERE held"

    async def half_held() -> bool:
        return await count(platform, held) >= len(before) // 2

    changed = rng.sample(merchants, 10)

    async def new_materials() -> None:
        async def one(m: Onboarded) -> None:
            path = f"/v1/merchants/{m.merchant_id}/materials"
            answer = await platform.call("POST", path, materials(f"{m.merchant_no} Ltd"))
            assert answer.status == 202, answer.body

        await asyncio.gather(*(one(m) for m in changed))
        await asyncio.sleep(0.3)  # some sent to the bank, some reviewed, some not yet relayed

    killing = asyncio.create_task(
        kill_when(platform, "payment-worker", half_held, log, before=new_materials)
    )
    work: list[Awaitable[None]] = [
        refunds_then_confirm(platform, o, merchants, retried) for o in to_confirm
    ]
    work += [ask_refunds(platform, o, merchants, retried, False) for o in by_group[UNSETTLED]]
    rng.shuffle(work)  # the kill falls in the middle of both
    started = time.monotonic()
    settled = "SELECT count(*) FROM orders WHERE settled_at IS NOT NULL"
    log.figures["orders settled by the scheduler as they were paid"] = await count(
        platform, settled
    )
    await bounded(IN_FLIGHT, work)
    log.figures["refunds and confirmations asked in"] = f"{time.monotonic() - started:.1f} s"
    await killing
    settling = [o for o in orders if o.group == YESTERDAY or o.confirm == "OK"]
    await wait_settled(platform, settling, timeout_s=120)
    log.figures["every due and confirmed order settled after"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    await log.mark("refunds before settlement, confirmations (1 SIGKILL of payment-worker)")
    after = [o for o in orders if o.refunds and o.refunds[0].after_settlement]
    await bounded(IN_FLIGHT, [ask_refunds(platform, o, merchants, retried, True) for o in after])
    await log.mark("refunds after settlement asked")

    # 4. Withdrawals from 20 merchants, a third of what each has available now.
    withdrawals: dict[str, tuple[int, int]] = {}  # payId -> (merchant index, amount)

    async def withdraw(index: int) -> None:
        m = merchants[index]
        balance = await platform.call("GET", f"/v1/accounts/{m.account_id}/balance")
        assert balance.status == 200, balance.body
        amount = balance.body["available"] // 3
        assert amount > 0, balance.body
        path = f"/v1/merchants/{m.merchant_id}/withdrawals"
        answer = await platform.call("POST", path, {"requestId": f"wd-{index}", "amount": amount})
        assert answer.status == 202, answer.body
        assert answer.body["payee"]["accountNo"] == "****" + m.account_no[-4:]
        withdrawals[answer.body["payId"]] = (index, amount)

    await asyncio.gather(*(withdraw(i) for i in rng.sample(range(MERCHANTS), 20)))
    await log.mark("20 withdrawals asked")

    # 5. Old payment notices again, after their refunds and settlements.
    resent = rng.sample([o for o in orders if o.refunds or o.group == YESTERDAY], ORDERS // 25)
    await bounded(
        IN_FLIGHT,
        [
            platform.sim(platform.channels, "POST", f"/sim/{o.channel.lower()}/notify/{o.order_id}")
            for o in resent
        ],
    )
    await quiet(platform)
    await log.mark("everything final, every notice and callback delivered")
    log.figures["asked again"] = dict(retried.counts)
    log.figures["latency"] = retried.percentiles()
    log.figures["channel simulator"] = {
        k: v
        for k, v in (await platform.sim(platform.channels, "GET", "/sim/stats")).items()
        if k in ("notices", "duplicates", "attempts", "retries", "delivered", "gaveUp")
    }
    print("\ndepository scenario:\n" + log.report())

    await assert_every_fen(platform, orders, merchants, withdrawals)
    await assert_each_final_once(platform, orders, withdrawals)
    await assert_reviewed_once(platform, changed)
    await log.mark("checks")
    print(f"  checks took {log.phases[-1][1]:.1f} s")


async def channel_refunds(platform: Platform, order: PlannedOrder) -> dict[str, tuple[str, int]]:
    """The channel's own book of the order's refunds: out_refund_no -> (status, amount)."""
    trade = await platform.sim(
        platform.channels, "GET", f"/sim/{order.channel.lower()}/trades/{order.order_id}"
    )
    assert trade["state"] in ("SUCCESS", "REFUND", "CLOSED") and trade["paidAt"], trade
    return {r["outRefundNo"]: (r["status"], r["amountFen"]) for r in trade["refunds"]}


async def assert_every_fen(
    platform: Platform,
    orders: list[PlannedOrder],
    merchants: list[Onboarded],
    withdrawals: dict[str, tuple[int, int]],
) -> None:
    pool = platform.env.pool
    await assert_ledger_invariants(pool)
    # Our refunds as the channel's book has them (its refund ids are ours).
    refund_rows = {
        r["refund_id"]: r
        for r in await pool.fetch(
            "SELECT refund_id, refund_no, state, error_code FROM order_refunds"
        )
    }
    succeeded: set[str] = set()
    refunded_orders = [o for o in orders if o.refunds]
    books = await asyncio.gather(*(channel_refunds(platform, o) for o in refunded_orders))
    for order, book in zip(refunded_orders, books, strict=True):
        for refund in order.refunds:
            row = refund_rows[refund.refund_id]
            status, amount = book.get(refund.refund_id, ("NONE", 0))
            if row["state"] == "SUCCESS":
                assert (status, amount) == ("SUCCESS", refund.amount), (refund, row, status)
                succeeded.add(refund.refund_id)
            else:
                assert status != "SUCCESS", (refund, row, status)
    assert len(refund_rows) == sum(len(o.refunds) for o in orders)
    # Which orders settled, and when each refund took its money.
    settled = {
        r["order_id"]
        for r in await pool.fetch("SELECT order_id FROM orders WHERE settled_at IS NOT NULL")
    }
    for order in orders:
        assert (order.order_id in settled) == (order.group == YESTERDAY or order.confirm == "OK"), (
            order
        )

    # Expected buckets of every account, from the plan, the answers and the channel's book.
    pending: Counter[str] = Counter()
    available: Counter[str] = Counter()
    fee = fee_account(platform.tenant.key_id, "CNY")
    clearing: Counter[str] = Counter()
    for order in orders:
        accounts = [merchants[m].account_id for m in order.receivers] + [fee]
        bucket = available if order.order_id in settled else pending
        clearing[order.channel] -= order.amount
        for account, part in zip(accounts, order.parts, strict=True):
            bucket[account] += part
        for refund in order.refunds:
            if refund.refund_id not in succeeded:
                continue
            clearing[order.channel] += refund.amount
            taken_from = available if refund.after_settlement else pending
            if not refund.after_settlement and order.order_id in settled:
                # Taken from pending before the settlement, which moved only the rest.
                taken_from = available
            for account, part in zip(accounts, refund.allocation, strict=True):
                taken_from[account] -= part
    paid_out = {
        r["pay_id"]: r["state"] for r in await pool.fetch("SELECT pay_id, state FROM payouts")
    }
    assert set(paid_out) == set(withdrawals)
    for pay_id, (index, amount) in withdrawals.items():
        assert paid_out[pay_id] == "SUCCESS", (pay_id, paid_out[pay_id])
        available[merchants[index].account_id] -= amount
    rows = {
        r["account_id"]: (r["pending"], r["available"], r["frozen"])
        for r in await pool.fetch(
            "SELECT account_id, pending, available, frozen FROM account_balances"
        )
    }
    for account in {*pending, *available}:
        assert rows[account] == (pending[account], available[account], 0), account
    for channel, expected in clearing.items():
        # A system account has no balance row: its postings are its balance.
        account = system_account(f"{channel.lower()}-clearing", "CNY")
        posted = await pool.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", account
        )
        assert posted == expected, (channel, posted, expected)
    # The bank paid each withdrawal to the merchant's verified account.
    for pay_id, (_, amount) in withdrawals.items():
        transfer = await platform.sim(platform.bank, "GET", f"/bank/v1/transfers/{pay_id}")
        assert transfer["status"] == "SUCCESS", transfer
        assert int(transfer["amount"]) == amount, transfer


async def assert_reviewed_once(platform: Platform, changed: list[Onboarded]) -> None:
    """The new material of each merchant reviewed once: version 2 in force, its approval
    called back once (each delivery was counted: none twice)."""
    rows = await platform.env.pool.fetch(
        "SELECT m.merchant_id, m.approved_version, v.state FROM merchants m"
        " JOIN merchant_versions v ON v.merchant_id = m.merchant_id AND v.version = 2"
        " WHERE m.merchant_id = ANY($1)",
        [m.merchant_id for m in changed],
    )
    assert sorted((r["approved_version"], r["state"]) for r in rows) == [(2, "APPROVED")] * 10
    approved = [
        subject
        for kind, subject, event in platform.callbacks.seen
        if kind == "merchant" and event == "MATERIALS_APPROVED"
    ]
    expected = {f"{m.merchant_id}:MATERIALS_APPROVED:2" for m in changed}
    assert sorted(approved) == sorted(expected)


async def assert_each_final_once(
    platform: Platform, orders: list[PlannedOrder], withdrawals: dict[str, tuple[int, int]]
) -> None:
    pool = platform.env.pool
    entries = Counter(
        {
            (r["ref_type"], r["ref_id"]): r["n"]
            for r in await pool.fetch(
                "SELECT ref_type, ref_id, count(*) AS n FROM journal_entries GROUP BY 1, 2"
            )
        }
    )
    refunds = {
        r["refund_id"]: r
        for r in await pool.fetch("SELECT refund_id, state, held FROM order_refunds")
    }
    settlements = await pool.fetch("SELECT settlement_id, order_id, state FROM settlements")
    calls = platform.callbacks
    assert calls.bad_signatures == 0
    assert all(n == 1 for n in calls.seen.values()), [k for k, n in calls.seen.items() if n > 1]
    for order in orders:
        assert entries[("order", order.order_id)] == 1, order
        assert calls.seen[("order", order.order_id, "PAID")] == 1, order
        for refund in order.refunds:
            row = refunds[refund.refund_id]
            assert row["state"] in ("SUCCESS", "FAILED"), row
            assert entries[("order-refund", refund.refund_id)] == (2 if row["held"] else 0), row
            assert calls.seen[("refund", refund.refund_id, row["state"])] == 1, row
    assert Counter(s["state"] for s in settlements) == Counter({"SETTLED": len(settlements)}), (
        Counter(s["state"] for s in settlements)
    )
    assert len({s["order_id"] for s in settlements}) == len(settlements)
    for s in settlements:
        assert entries[("settlement", s["settlement_id"])] == 1, s
        assert calls.seen[("settlement", s["settlement_id"], "SETTLED")] == 1, s
    for pay_id in withdrawals:
        assert calls.seen[("withdrawal", pay_id, "SUCCESS")] == 1, pay_id
    merchant_events = [k for k in calls.seen if k[0] == "merchant"]
    assert len(merchant_events) >= 2 * MERCHANTS  # approved and account verified, at least
    # Exceptions: none (every notice matched its order, amounts included).
    assert await pool.fetchval("SELECT count(*) FROM order_exceptions") == 0
