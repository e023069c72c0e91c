"""Gauges read from the database on a timer, never on a request or a batch: each probe is one
small query answered from an index (or the planner's statistics), bounded by a statement
timeout, so a slow database slows the samples and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from fundhub.common import inbox, outbox
from fundhub.common.db import Connection, Pool
from fundhub.common.metrics import INBOX_ROWS, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, SAMPLE_FAILURES

log = structlog.get_logger(__name__)

# Longer than any probe should take on an index; a probe past it is cancelled by Postgres.
PROBE_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class Probe:
    """One sample: ``read`` queries and sets its gauges; ``name`` labels its failures.
    ``gauges``: those declared outside the default registry (no labels, so they would show a
    0 in every process that imports them), exported once a Sampler runs this probe."""

    name: str
    read: Callable[[Connection], Awaitable[None]]
    gauges: tuple[Collector, ...] = ()


_exported: set[int] = set()


def _export(gauge: Collector) -> None:
    if id(gauge) not in _exported:
        REGISTRY.register(gauge)
        _exported.add(id(gauge))


class Sampler:
    """Runs every probe each ``interval_s`` on one pooled connection, each in its own
    transaction (a failed probe does not spoil the others)."""

    def __init__(self, pool: Pool, probes: Sequence[Probe], interval_s: float) -> None:
        self._pool = pool
        self._probes = tuple(probes)
        for probe in self._probes:
            for gauge in probe.gauges:
                _export(gauge)
        self._interval_s = interval_s

    async def sample_once(self) -> None:
        async with self._pool.acquire() as conn:
            for probe in self._probes:
                try:
                    async with conn.transaction(readonly=True):
                        await conn.execute(f"SET LOCAL statement_timeout = {PROBE_TIMEOUT_MS}")
                        await probe.read(conn)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    SAMPLE_FAILURES.labels(probe.name).inc()
                    log.warning("sample_failed", probe=probe.name, error=str(exc))

    async def run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no connection: the next tick tries again
                log.warning("sampler_unavailable", error=str(exc))
            await asyncio.sleep(self._interval_s)


def messaging_probes() -> list[Probe]:
    """What every worker samples: the shared outbox and inbox."""
    return [
        Probe("outbox", outbox.sample_backlog, (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE)),
        Probe("inbox", inbox.sample_size, (INBOX_ROWS,)),
    ]
