"""The publisher's one deadline: a caller waits at most the publish timeout for Kafka, a fresh
producer's start included (a request's answer waits on it while the broker comes back)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fundhub.common import kafka
from fundhub.common.config import Settings
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed


class ComingBack:
    """A producer for a broker that is coming back: it connects slowly, then never
    acknowledges a send."""

    stopped = False

    async def start(self) -> None:
        await asyncio.sleep(0.3)

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


async def test_a_send_waits_at_most_the_publish_timeout_start_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[ComingBack] = []

    def make_producer(settings: Settings, **overrides: object) -> ComingBack:
        made.append(ComingBack())
        return made[-1]

    monkeypatch.setattr(kafka, "make_producer", make_producer)
    publisher = KafkaPublisher(Settings(kafka_publish_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(PublishFailed):
        await publisher.send_many([OutgoingMessage("t", b"x", None)])
    took = time.monotonic() - started
    assert took < 0.65, f"waited {took:.2f}s for a publish timeout of 0.5s"
    await publisher.stop()
    assert len(made) == 1 and made[0].stopped  # the failed producer is let go
