"""``fundhub-audit-writer``: append the gateway's audit entries (``audit.v1``) to the chain."""

from __future__ import annotations

from functools import partial

from fundhub.audit.consumer import CONSUMER, audit_handler
from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.migrations import verify
from fundhub.common.sampling import Sampler, messaging_probes
from fundhub.common.topics import topics
from fundhub.web.worker import run_worker, start_worker


async def run(settings: Settings) -> None:
    await verify(settings.database_url)
    pool = await db.connect_pool(settings.database_url, max_size=2)
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)  # dead letters
    await publisher.start()
    names = topics(settings)
    # A linger: the chain's head is locked per batch, so fewer, larger batches.
    worker = BatchConsumer(
        settings, pool, publisher, names.group(CONSUMER), names.audit, audit_handler(), 20
    )
    await run_worker(
        "audit_writer",
        {
            "consumer": worker.run(),
            "sampler": Sampler(pool, messaging_probes(), settings.metrics_sample_s).run(),
        },
        {"kafka": worker.kafka_ready, "postgres": partial(db.ping, pool)},
        settings.gateway_host,
        settings.audit_writer_port,
        gentle={"consumer": worker.stop},
        close=[publisher.stop, partial(db.close_pool, pool)],
    )


def main() -> None:
    start_worker("audit-writer", run)


if __name__ == "__main__":
    main()
