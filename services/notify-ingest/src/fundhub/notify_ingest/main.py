"""``fundhub-notify-ingest``: consume the bank's transfer notifications into the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from fundhub.common import db
from fundhub.common.config import Settings, get_settings
from fundhub.common.health import serve_health
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.logging import configure_logging
from fundhub.common.outbox import OutboxRelay
from fundhub.common.topics import topics
from fundhub.notify_ingest.worker import TransferNotifyWorker

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> None:
    pool = await db.connect_pool(settings.database_url, max_size=4)
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    worker = TransferNotifyWorker(settings, topics(settings), pool, publisher)
    relay = OutboxRelay(pool, publisher)

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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("notify_ingest_started", health_port=settings.notify_ingest_port)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    failed = [t for t in done if t is not stopper and t.exception() is not None]
    await publisher.stop()
    await pool.close()
    log.info("notify_ingest_stopped")
    if failed:
        raise SystemExit(f"{failed[0].get_name()} failed: {failed[0].exception()!r}")


def main() -> None:
    settings = get_settings()
    configure_logging("notify-ingest", settings.log_level)
    import uvloop

    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
