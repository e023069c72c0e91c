"""The daily loop: at the fetch time (GMT+8) each configured source's file of the previous day
is fetched, imported and reconciled; a source not ready yet is asked again later. A day that
already has a file of a source is not fetched again (an operator's import or upload counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date

import asyncpg
import structlog

from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.db import Pool
from fundhub.reconciler.fetchers import Fetcher
from fundhub.reconciliation.download_http import NOT_READY, UNAVAILABLE, StatementUnavailable
from fundhub.reconciliation.fetch_schedule import (
    MAX_TRIES,
    RETRY_AFTER,
    due_day,
    next_fetch,
    parse_fetch_at,
)
from fundhub.reconciliation.intake import take_file
from fundhub.reconciliation.statement import Source, StatementRejected

log = structlog.get_logger(__name__)
BY = "reconciler"


def sources_of(settings: Settings) -> list[Source]:
    return [Source(s.strip()) for s in settings.recon_sources.split(",") if s.strip()]


async def fetch_day(
    pool: Pool, fetch: Fetcher, settings: Settings, day: date, sources: Sequence[Source]
) -> dict[Source, str]:
    """One attempt per source: ``imported``, ``known`` (a file is there), ``not-ready``,
    ``unavailable`` (the source or the database out of reach), ``refused`` or ``rejected``
    (the file failed the reader)."""
    outcome: dict[Source, str] = {}
    for source in sources:
        if await pool.fetchval(
            "SELECT 1 FROM recon_files WHERE source = $1 AND day = $2 AND superseded_by IS NULL",
            source.value,
            day,
        ):
            outcome[source] = "known"
            continue
        try:
            name, data = await fetch(source, day)
            taken = await take_file(pool, source, day, name, data, by=BY, settings=settings)
        except StatementUnavailable as exc:
            outcome[source] = {NOT_READY: "not-ready", UNAVAILABLE: "unavailable"}.get(
                exc.code, "refused"
            )
            log.warning("statement_unavailable", source=source.value, day=str(day), error=str(exc))
            continue
        except StatementRejected as exc:
            outcome[source] = "rejected"
            log.error("statement_rejected", source=source.value, day=str(day), error=str(exc))
            continue
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # A source or the database out of reach: asked again later, the loop goes on.
            outcome[source] = "unavailable"
            log.warning(
                "statement_fetch_failed", source=source.value, day=str(day), error=repr(exc)
            )
            continue
        outcome[source] = "imported"
        run = taken.run
        log.info(
            "statement_reconciled",
            source=source.value,
            day=str(day),
            run_id=None if run is None else run.run_id,
            counts=None if run is None else run.counts,
        )
    return outcome


async def run_daily(pool: Pool, fetch: Fetcher, settings: Settings) -> None:
    """Forever: the due day at once (a restart after the fetch time catches up), then each
    day at the fetch time; sources not ready are asked again every ``RETRY_AFTER``."""
    at = parse_fetch_at(settings.recon_fetch_at)
    sources = sources_of(settings)
    day = due_day(utcnow(), at)
    while True:
        pending = list(sources)
        for _ in range(MAX_TRIES):
            try:
                outcome = await fetch_day(pool, fetch, settings, day, pending)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:  # the check's query
                log.warning("statement_fetch_failed", day=str(day), error=repr(exc))
                outcome = {s: "unavailable" for s in pending}
            pending = [s for s, o in outcome.items() if o in ("not-ready", "unavailable")]
            if not pending:
                break
            await asyncio.sleep(RETRY_AFTER.total_seconds())
        when, day = next_fetch(utcnow(), at)
        await asyncio.sleep(max(0.0, (when - utcnow()).total_seconds()))
