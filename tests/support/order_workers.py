"""The orders' side of notify-ingest and payment-worker run in the test's loop, as the services
compose them, for tests whose channel adapters are test code (``channel_server``): the channel
notifications' consumer, the refund commands' consumer with its sender and poller, and an
outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.db import Pool
from fundhub.common.kafka import KafkaPublisher
from fundhub.common.outbox import PAYOUTS_CHANNEL, OutboxRelay
from fundhub.common.topics import topics
from fundhub.orders import notifications, refunds
from fundhub.orders.channel_choice import Channels
from fundhub.orders.consumer import channel_event_handler, refund_command_handler


@asynccontextmanager
async def order_workers(
    settings: Settings, pool: Pool, channels: Channels, with_events: bool = True
) -> AsyncIterator[KafkaPublisher]:
    """Runs them until the block ends; yields their publisher (tests publish with it too).
    ``with_events=False`` leaves the channel notifications to a real notify-ingest."""
    names = topics(settings)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    sender = refunds.RefundSender(pool, names, channels)
    work = [
        BatchConsumer(
            settings,
            pool,
            publisher,
            names.group(refunds.CONSUMER),
            names.order_commands,
            refund_command_handler(names, sender),
        ).run(),
        OutboxRelay(pool, publisher, PAYOUTS_CHANNEL).run(),
        refunds.RefundPoller(pool, sender, 0.3, 1.0).run(interval_s=0.2),
    ]
    if with_events:
        events = BatchConsumer(
            settings,
            pool,
            publisher,
            names.group(notifications.CONSUMER),
            names.channel_notifications,
            channel_event_handler(names),
        )
        work.append(events.run())
    tasks = [asyncio.create_task(coroutine) for coroutine in work]
    try:
        yield publisher
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await sender.close()
        await publisher.stop()
