"""``fundhub-callback-dispatcher``: deliver payouts' final states to the clients' callbackUrl."""

from __future__ import annotations

import asyncio

import structlog

from fundhub.common import db
from fundhub.common.config import Settings, get_settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.lifecycle import exit_if_failed, run_until_stopped
from fundhub.common.logging import configure_logging
from fundhub.common.migrations import verify
from fundhub.common.topics import topics
from fundhub.web.health import serve_health
from fundhub.webhooks.intake import callback_handler
from fundhub.webhooks.sender import CallbackSender
from fundhub.webhooks.store import CONSUMER

log = structlog.get_logger(__name__)
# Past the last attempt's timeout, an unfinished batch is cancelled; its leases expire and
# another replica (or the next start) sends those callbacks again.
DRAIN_MARGIN_S = 5.0


async def run(settings: Settings) -> None:
    if not settings.master_key:
        raise SystemExit("FUNDHUB_MASTER_KEY is required: webhook secrets are sealed with it")
    await verify(settings.database_url)
    pool = await db.connect_pool(settings.database_url, max_size=settings.db_pool_max)
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)  # dead letters only
    await publisher.start()
    names = topics(settings)
    wake = asyncio.Event()
    intake = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(CONSUMER),
        names.client_callbacks,
        callback_handler(wake),
    )
    sender = CallbackSender(settings, pool, settings.master_key, wake)

    async def postgres_ready() -> bool:
        return await db.ping(pool)

    sending = asyncio.create_task(sender.run(), name="sender")
    others = [
        asyncio.create_task(intake.run(), name="intake"),
        asyncio.create_task(
            serve_health(
                {"kafka": intake.kafka_ready, "postgres": postgres_ready},
                settings.gateway_host,
                settings.callback_dispatcher_port,
            ),
            name="health",
        ),
    ]
    log.info("callback_dispatcher_started", health_port=settings.callback_dispatcher_port)

    async def drain() -> None:
        """Let the attempts under way finish and be recorded before the process ends."""
        sender.stop()
        await asyncio.wait_for(sending, timeout=settings.callback_timeout_s + DRAIN_MARGIN_S)

    failed = await run_until_stopped([sending, *others], drain)
    await publisher.stop()
    await pool.close()
    log.info("callback_dispatcher_stopped")
    exit_if_failed(failed)


def main() -> None:
    settings = get_settings()
    configure_logging("callback-dispatcher", settings.log_level)
    import uvloop

    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
