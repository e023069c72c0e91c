"""The gateway's rate limiter against a store fake that counts with the pure GCRA: concurrent
requests share refills (one round trip serves everyone waiting), the count stays exact, and a
store that does not answer in time lets its waiters through at one deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fundhub.access.limits import Rate, gcra
from fundhub.common.config import Settings
from fundhub.common.errors import FundhubError
from fundhub.gateway.rate_limits import RateLimiter


class GcraStore:
    """What ``rate_limit_take`` answers, from the pure GCRA, after a round trip."""

    def __init__(self, round_trip_s: float = 0.01) -> None:
        self.round_trip_s = round_trip_s
        self.tats: dict[str, float | None] = {}
        self.asked: list[int] = []  # tokens asked per statement
        self.answering = asyncio.Event()
        self.answering.set()

    async def fetchrow(self, _query: str, buckets: list[str], counts: list[int],
                       intervals: list[float], periods: list[float]) -> dict[str, Any]:  # fmt: skip
        self.asked.append(sum(counts))
        await asyncio.sleep(self.round_trip_s)
        await self.answering.wait()
        allowed, waits = [], []
        for bucket, count, interval, period in zip(
            buckets, counts, intervals, periods, strict=True
        ):
            rate = Rate(round(period / interval), period)
            tat, granted, wait = gcra(self.tats.get(bucket), time.time(), rate, count=count)
            self.tats[bucket] = tat
            allowed.append(granted)
            waits.append(wait)
        return {"allowed": allowed, "waits": waits}


async def limiter_with(store: GcraStore, **settings: Any) -> RateLimiter:
    limiter = RateLimiter(Settings(**settings))
    await limiter.start(store)  # type: ignore[arg-type]
    return limiter


def bank_scope(address: str = "10.0.0.1") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/callbacks/bank", "client": (address, 1)}


async def passes(limiter: RateLimiter, scope: dict[str, Any]) -> bool:
    try:
        await limiter.guard_address(scope, "/callbacks/bank")
    except FundhubError:
        return False
    return True


async def test_concurrent_requests_share_refills_instead_of_queueing_for_one_after_another() -> (
    None
):
    store = GcraStore()
    limiter = await limiter_with(store, rate_limit_bank_callback="1000/second")  # leases of 10
    try:
        results = await asyncio.gather(*(passes(limiter, bank_scope()) for _ in range(200)))
        assert all(results)
        # A lease of 10 per round trip would take 20 statements; asking for everyone waiting
        # takes a handful.
        assert len(store.asked) <= 4, store.asked
        assert sum(store.asked) <= 200 + 10  # what is held unused stays within a lease
    finally:
        await limiter.stop()


async def test_the_count_stays_exact_for_a_small_limit_under_concurrency() -> None:
    store = GcraStore()
    limiter = await limiter_with(store, rate_limit_bank_callback="7/minute")  # exact: lease 1
    try:
        results = await asyncio.gather(
            *(passes(limiter, bank_scope("10.0.0.2")) for _ in range(30))
        )
        assert sum(results) == 7
    finally:
        await limiter.stop()


async def test_a_store_that_does_not_answer_lets_every_waiter_through_at_one_deadline() -> None:
    store = GcraStore()
    store.answering.clear()
    limiter = await limiter_with(
        store, rate_limit_bank_callback="1000/second", rate_limit_timeout_s=0.2
    )
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(passes(limiter, bank_scope("10.0.0.3")) for _ in range(50))
        )
        assert all(results)  # fail open
        assert time.monotonic() - started < 1.0
        assert len(store.asked) == 1  # one refill, still running
        store.answering.set()
        await asyncio.sleep(0.1)  # its late answer is kept as a lease
        assert await passes(limiter, bank_scope("10.0.0.3"))
        assert len(store.asked) == 1
    finally:
        await limiter.stop()


@pytest.fixture(autouse=True)
def _no_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limiter's purge of idle buckets runs a minute after start: not in these tests."""
    monkeypatch.setattr("fundhub.gateway.rate_limits.PURGE_INTERVAL_S", 3600.0)
