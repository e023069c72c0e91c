"""``fundhub-notify-ingest``: consume the bank's transfer notifications into the ledger, and
the channels' verified notifications into orders (payments, refunds, exceptions)."""

from __future__ import annotations

from functools import partial

from fundhub.bank_transfers.apply import CONSUMER
from fundhub.bank_transfers.consumer import transfer_notify_handler
from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.migrations import verify
from fundhub.common.outbox import LEDGER_CHANNEL, OutboxRelay
from fundhub.common.retention import policy_of, run_retention
from fundhub.common.sampling import Sampler, messaging_probes
from fundhub.common.topics import topics
from fundhub.merchants.lookup import ClosedMerchantAccounts
from fundhub.orders import notifications
from fundhub.orders.consumer import channel_event_handler
from fundhub.web.worker import run_worker, start_worker


async def run(settings: Settings) -> None:
    await verify(settings.database_url)
    pool = await db.connect_pool(settings.database_url, max_size=4)
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    names = topics(settings)
    worker = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(CONSUMER),
        names.bank_transfer_notify,
        transfer_notify_handler(names, ClosedMerchantAccounts()),
    )
    channel_events = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(notifications.CONSUMER),
        names.channel_notifications,
        channel_event_handler(names),
    )
    relay = OutboxRelay(pool, publisher, LEDGER_CHANNEL)

    async def kafka_ready() -> bool:
        return await worker.kafka_ready() and await channel_events.kafka_ready()

    await run_worker(
        "notify_ingest",
        {
            "consumer": worker.run(),
            "channel-events": channel_events.run(),
            "outbox-relay": relay.run(),
            "retention": run_retention(pool, policy_of(settings)),
            "sampler": Sampler(pool, messaging_probes(), settings.metrics_sample_s).run(),
        },
        {"kafka": kafka_ready, "postgres": partial(db.ping, pool)},
        settings.gateway_host,
        settings.notify_ingest_port,
        gentle={"consumer": worker.stop, "channel-events": channel_events.stop},
        close=[publisher.stop, partial(db.close_pool, pool)],
    )


def main() -> None:
    start_worker("notify-ingest", run)


if __name__ == "__main__":
    main()
