"""Settlement's part of payment-worker: the scheduler and the consumer of the depository's
split results, composed from the worker's own pool, publisher and bank session."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.db import Pool
from fundhub.common.kafka import KafkaPublisher
from fundhub.common.topics import Topics
from fundhub.settlement.depository_http import HttpDepository
from fundhub.settlement.results import CONSUMER, split_result_handler
from fundhub.settlement.scheduler import Scheduler


@dataclass
class SettlementWorker:
    scheduler: Scheduler
    results: BatchConsumer

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {"settlement-scheduler": self.scheduler.run(), "split-results": self.results.run()}


def settlement_worker(
    settings: Settings,
    pool: Pool,
    publisher: KafkaPublisher,
    session: aiohttp.ClientSession,
    names: Topics,
) -> SettlementWorker:
    """The depository is the payouts' bank: the same session (its TLS), base URL and timeout."""
    depository = HttpDepository(session, settings.bank_base_url, timeout_s=settings.bank_timeout_s)
    results = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(CONSUMER),
        names.bank_split_results,
        split_result_handler(names),
    )
    return SettlementWorker(Scheduler(settings, pool, names, depository), results)
