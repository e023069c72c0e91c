"""``fundhub-callback-dispatcher``: deliver payouts' final states to the clients' callbackUrl."""

from __future__ import annotations

import asyncio
from functools import partial

from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.migrations import verify
from fundhub.common.sampling import Sampler, messaging_probes
from fundhub.common.topics import topics
from fundhub.web.worker import Tasks, run_worker, start_worker
from fundhub.webhooks.intake import callback_handler
from fundhub.webhooks.sender import CallbackSender
from fundhub.webhooks.store import CONSUMER, pending_probe

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
    sender = CallbackSender(settings, pool, settings.master_keys(), wake)
    probes = [*messaging_probes(), pending_probe()]
    sampler = Sampler(pool, probes, settings.metrics_sample_s)

    async def drain(tasks: Tasks) -> None:
        """Let the attempts under way finish and be recorded before the process ends."""
        sender.stop()
        await asyncio.wait_for(
            tasks["sender"], timeout=settings.callback_timeout_s + DRAIN_MARGIN_S
        )

    await run_worker(
        "callback_dispatcher",
        {"sender": sender.run(), "intake": intake.run(), "sampler": sampler.run()},
        {"kafka": intake.kafka_ready, "postgres": partial(db.ping, pool)},
        settings.gateway_host,
        settings.callback_dispatcher_port,
        drain=drain,
        gentle={"intake": intake.stop},
        close=[publisher.stop, partial(db.close_pool, pool)],
    )


def main() -> None:
    start_worker("callback-dispatcher", run)


if __name__ == "__main__":
    main()
