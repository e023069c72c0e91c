"""``fundhub-notify-ingest``: consume the bank's transfer notifications into the ledger."""

from __future__ import annotations

import asyncio

import structlog

from fundhub.bank_transfers.apply import CONSUMER
from fundhub.bank_transfers.consumer import transfer_notify_handler
from fundhub.common import db
from fundhub.common.config import Settings, get_settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.lifecycle import exit_if_failed, run_until_stopped
from fundhub.common.logging import configure_logging
from fundhub.common.migrations import verify
from fundhub.common.outbox import LEDGER_CHANNEL, OutboxRelay
from fundhub.common.topics import topics
from fundhub.web.health import serve_health

log = structlog.get_logger(__name__)


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
        transfer_notify_handler(names),
    )
    relay = OutboxRelay(pool, publisher, LEDGER_CHANNEL)

    async def postgres_ready() -> bool:
        return await db.ping(pool)

    tasks = [
        asyncio.create_task(worker.run(), name="consumer"),
        asyncio.create_task(relay.run(), name="outbox-relay"),
        asyncio.create_task(
            serve_health(
                {"kafka": worker.kafka_ready, "postgres": postgres_ready},
                settings.gateway_host,
                settings.notify_ingest_port,
            ),
            name="health",
        ),
    ]
    log.info("notify_ingest_started", health_port=settings.notify_ingest_port)
    failed = await run_until_stopped(tasks)
    await publisher.stop()
    await pool.close()
    log.info("notify_ingest_stopped")
    exit_if_failed(failed)


def main() -> None:
    settings = get_settings()
    configure_logging("notify-ingest", settings.log_level)
    import uvloop

    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
