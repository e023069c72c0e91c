"""``fundhub-payment-worker``: accept payouts, send them to the bank, follow each to its end."""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from fundhub.common import db
from fundhub.common.config import Settings, get_settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.lifecycle import exit_if_failed, run_until_stopped
from fundhub.common.logging import configure_logging
from fundhub.common.migrations import verify
from fundhub.common.outbox import PAYOUTS_CHANNEL, OutboxRelay
from fundhub.common.topics import topics
from fundhub.payouts import commands, results
from fundhub.payouts.bank_http import HttpBankAdapter
from fundhub.payouts.consumers import command_handler, result_handler
from fundhub.payouts.poller import Poller
from fundhub.payouts.submitter import Submitter
from fundhub.web.health import serve_health

log = structlog.get_logger(__name__)

# Per batch the worker locks, writes and (for commands) calls the bank once, whatever its size:
# waiting a little for larger batches costs a few ms of latency and saves most of that work.
CONSUMER_LINGER_MS = 25


async def run(settings: Settings) -> None:
    await verify(settings.database_url)
    names = topics(settings)
    pool = await db.connect_pool(settings.database_url, max_size=max(8, settings.db_pool_max))
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0)
    session = aiohttp.ClientSession(connector=connector)
    bank = HttpBankAdapter(session, settings.bank_base_url, timeout_s=settings.bank_timeout_s)
    submitter = Submitter(pool, names, bank, settings.bank_callback_url())
    command_consumer = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(commands.CONSUMER),
        names.payout_commands,
        command_handler(settings, names, submitter),
        linger_ms=CONSUMER_LINGER_MS,
    )
    result_consumer = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(results.CONSUMER),
        names.bank_payout_results,
        result_handler(names),
        linger_ms=CONSUMER_LINGER_MS,
    )
    poller = Poller(settings, pool, submitter)
    relay = OutboxRelay(pool, publisher, PAYOUTS_CHANNEL)

    async def kafka_ready() -> bool:
        return await command_consumer.kafka_ready() and await result_consumer.kafka_ready()

    async def postgres_ready() -> bool:
        return await db.ping(pool)

    tasks = [
        asyncio.create_task(command_consumer.run(), name="commands"),
        asyncio.create_task(result_consumer.run(), name="results"),
        asyncio.create_task(poller.run(), name="poller"),
        asyncio.create_task(relay.run(), name="outbox-relay"),
        asyncio.create_task(
            serve_health(
                {"kafka": kafka_ready, "postgres": postgres_ready},
                settings.gateway_host,
                settings.payment_worker_port,
            ),
            name="health",
        ),
    ]
    log.info("payment_worker_started", health_port=settings.payment_worker_port)
    failed = await run_until_stopped(tasks)
    await submitter.close()
    await session.close()
    await publisher.stop()
    await pool.close()
    log.info("payment_worker_stopped")
    exit_if_failed(failed)


def main() -> None:
    settings = get_settings()
    configure_logging("payment-worker", settings.log_level)
    import uvloop

    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
