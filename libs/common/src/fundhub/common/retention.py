"""Retention of the exactly-once plumbing: the inbox and the outbox stay the size of a window.

The inbox only has to remember an id for as long as someone may deliver it again: the bank
retries a notification 3 times 3 minutes apart, WeChat Pay for about 24 hours, Alipay for about
25, and Kafka re-delivers what a consumer had not committed when it stopped (seconds' worth; an
offset reset replays at most a topic's retention, Kafka's default 7 days).
``inbox_dedupe_window_s`` (7 days by default) is longer than all of them; an id older than that
is deleted, and a copy arriving after it would be taken as new. Inside the window the primary
key (consumer, message_id) still refuses every duplicate: a purge only ever removes rows older
than the window, never one a claim could need.

A published outbox row has done its work (Kafka holds the event); it is kept
``outbox_keep_published_s`` (an hour) for whoever looks at what left recently, then deleted.
An unpublished row is never touched.

Each statement deletes at most ``batch`` rows, the oldest, found through the index on their time
(migration 0029) and locked with SKIP LOCKED, so replicas purging at once share the work and a
pass never waits on, nor scans, the rest of the table. The relaying services run the loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from fundhub.common.config import Settings
from fundhub.common.db import Pool

log = structlog.get_logger(__name__)

# Rows deleted stay in the index until vacuum: a pass working off a backlog starts each batch
# where the previous one ended (``$3``), not at the index's old end, so that it never walks the
# dead entries of its own earlier batches again.
_PURGE = """
WITH gone AS (
    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {table}
        WHERE {column} >= $3 AND {column} < now() - make_interval(secs => $1)
        ORDER BY {column} LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING {column} AS at)
SELECT count(*) AS n, max(at) AS last FROM gone
"""
PURGE_INBOX = _PURGE.format(table="inbox", column="processed_at")
PURGE_OUTBOX = _PURGE.format(table="outbox", column="published_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetentionPolicy:
    inbox_window_s: float
    outbox_keep_s: float
    batch: int = 5000
    interval_s: float = 60.0


def policy_of(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        settings.inbox_dedupe_window_s,
        settings.outbox_keep_published_s,
        interval_s=settings.retention_interval_s,
    )


@dataclass
class Purged:
    inbox: int = 0
    outbox: int = 0


async def _batch(
    pool: Pool, statement: str, keep_s: float, batch: int, after: datetime
) -> tuple[int, datetime]:
    row = await pool.fetchrow(statement, keep_s, batch, after)
    assert row is not None
    return int(row["n"]), row["last"] or after


async def purge_inbox_batch(
    pool: Pool, window_s: float, batch: int, after: datetime = _EPOCH
) -> tuple[int, datetime]:
    """Delete up to ``batch`` of the oldest ids past the dedupe window (none older than
    ``after``); how many went, and the time of the last (where the next batch starts)."""
    return await _batch(pool, PURGE_INBOX, window_s, batch, after)


async def purge_outbox_batch(
    pool: Pool, keep_s: float, batch: int, after: datetime = _EPOCH
) -> tuple[int, datetime]:
    """Delete up to ``batch`` of the oldest rows published more than ``keep_s`` ago."""
    return await _batch(pool, PURGE_OUTBOX, keep_s, batch, after)


async def purge(pool: Pool, policy: RetentionPolicy, max_batches: int = 1_000) -> Purged:
    """Batches until nothing is left past the windows (or ``max_batches`` each: a backlog of
    years is worked off over several passes, each transaction short)."""
    done = Purged()
    after = _EPOCH
    for _ in range(max_batches):
        n, after = await purge_inbox_batch(pool, policy.inbox_window_s, policy.batch, after)
        done.inbox += n
        if n < policy.batch:
            break
    after = _EPOCH
    for _ in range(max_batches):
        n, after = await purge_outbox_batch(pool, policy.outbox_keep_s, policy.batch, after)
        done.outbox += n
        if n < policy.batch:
            break
    return done


async def run_retention(pool: Pool, policy: RetentionPolicy) -> None:
    """Purge every ``interval_s``; a failed pass is logged and tried again at the next."""
    while True:
        try:
            done = await purge(pool, policy)
            if done.inbox or done.outbox:
                log.info("retention_purged", inbox=done.inbox, outbox=done.outbox)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention_purge_failed", error=str(exc))
        await asyncio.sleep(policy.interval_s)
