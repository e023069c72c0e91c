"""The one retry policy (fundhub.common.retry): full-jitter exponential pauses, capped, bounded."""

from __future__ import annotations

import time

import asyncpg
import pytest

from fundhub.common import retry


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def failing_attempts(attempts: int, sleeps: Sleeps) -> int:
    tries = 0
    with pytest.raises(TimeoutError):
        async for attempt in retry.a_few_times(
            "test", attempts, base_s=0.5, max_s=2.0, sleep=sleeps
        ):
            with attempt:
                tries += 1
                raise TimeoutError("no answer")
    return tries


async def test_pauses_grow_with_full_jitter_up_to_the_cap() -> None:
    by_attempt: list[list[float]] = [[] for _ in range(7)]
    for _ in range(200):
        sleeps = Sleeps()
        assert await failing_attempts(8, sleeps) == 8
        assert len(sleeps.waits) == 7  # no pause after the last attempt
        for i, wait in enumerate(sleeps.waits):
            by_attempt[i].append(wait)
    for i, ceiling in enumerate([0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]):
        waits = by_attempt[i]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling * 0.8  # jittered across the whole range, not fixed


async def test_only_what_is_worth_another_try_is_retried() -> None:
    sleeps = Sleeps()
    tries = 0
    with pytest.raises(ValueError):
        async for attempt in retry.until_it_works("test", sleep=sleeps):
            with attempt:
                tries += 1
                raise ValueError("a bug, not an outage")
    assert tries == 1 and sleeps.waits == []


async def test_until_it_works_goes_on_until_it_does() -> None:
    sleeps = Sleeps()
    tries = 0
    async for attempt in retry.until_it_works("test", sleep=sleeps):
        with attempt:
            tries += 1
            if tries < 20:
                raise ConnectionRefusedError(111, "refused")
    assert tries == 20 and len(sleeps.waits) == 19
    assert all(wait <= retry.MAX_S for wait in sleeps.waits)


async def test_a_connection_dropped_mid_operation_is_retried() -> None:
    """What a Postgres restart raises inside asyncpg (issue 9, defect 7): payment-worker exited
    on the second of these, its protocol state confused by the dropped connection."""
    for error in (
        asyncpg.InterfaceError("connection has been released back to the pool"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
    ):
        sleeps = Sleeps()
        tries = 0
        async for attempt in retry.until_it_works("test", sleep=sleeps):
            with attempt:
                tries += 1
                if tries < 3:
                    raise error
        assert tries == 3 and len(sleeps.waits) == 2


async def test_for_at_most_stops_trying_once_its_time_is_up() -> None:
    tries = 0
    started = time.monotonic()
    with pytest.raises(asyncpg.InternalClientError):
        async for attempt in retry.for_at_most("test", 0.3, base_s=0.02, max_s=0.05):
            with attempt:
                tries += 1
                raise asyncpg.InternalClientError("cannot switch to state 12")
    took = time.monotonic() - started
    assert tries > 2 and 0.3 <= took < 0.3 + 0.2


async def test_for_at_most_returns_once_it_works_and_tries_once_with_no_time_left() -> None:
    tries = 0
    async for attempt in retry.for_at_most("test", 5.0, base_s=0.01, max_s=0.01):
        with attempt:
            tries += 1
            if tries < 3:
                raise asyncpg.CannotConnectNowError("the database system is starting up")
    assert tries == 3
    tries = 0
    with pytest.raises(OSError):
        async for attempt in retry.for_at_most("test", -1.0):
            with attempt:
                tries += 1
                raise OSError("refused")
    assert tries == 1
