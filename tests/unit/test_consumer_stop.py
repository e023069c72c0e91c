"""A consumer's stop on the way out is bounded: a stuck group coordinator must not hang a
service (or a test module) for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from fundhub.common.consumer import stop_within


class StuckConsumer:
    """Stands in for an AIOKafkaConsumer whose coordination task never finishes."""

    async def stop(self) -> None:
        await asyncio.Event().wait()


class QuickConsumer:
    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def test_a_stop_that_never_ends_is_abandoned_after_the_bound() -> None:
    started = time.monotonic()
    await stop_within(cast(Any, StuckConsumer()), timeout_s=0.2)
    assert time.monotonic() - started < 1.0


async def test_a_stop_that_ends_is_awaited() -> None:
    consumer = QuickConsumer()
    await stop_within(cast(Any, consumer), timeout_s=5)
    assert consumer.stopped
