"""Rows made in a worker thread, handed to the event loop in batches: all of them in order, an
error at the end raised in the consumer after the rows before it, and a consumer that stops
early stops the producer (no thread left behind)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from fundhub.reconciliation import row_feed


def numbered(n: int, fail_at_end: bool = False) -> Iterator[tuple[int]]:
    for i in range(n):
        yield (i,)
    if fail_at_end:
        raise ValueError("the summary disagrees")


async def test_every_row_in_order_with_progress() -> None:
    seen: list[int] = []
    got = [row[0] async for row in row_feed.threaded_rows(numbered(20_000), seen.append)]
    assert got == list(range(20_000))
    assert seen[-1] == 20_000


async def test_an_error_at_the_end_comes_after_the_rows_before_it() -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="summary"):
        async for row in row_feed.threaded_rows(numbered(10_000, fail_at_end=True)):
            got.append(row[0])
    assert got == list(range(10_000))


async def test_a_consumer_that_stops_stops_the_producer() -> None:
    before = threading.active_count()
    feed = row_feed.threaded_rows(numbered(10_000_000))
    async for row in feed:
        if row[0] == 10:
            break
    await feed.aclose()
    for _ in range(50):
        if threading.active_count() <= before:
            break
        await asyncio.sleep(0.1)
    assert threading.active_count() <= before
