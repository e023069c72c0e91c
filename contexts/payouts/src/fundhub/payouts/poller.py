"""Following payouts the bank has not reported on: query, resend if never received, alert late.

A claim pushes the payout's next look back (exponential backoff) and commits before any call to
the bank, so several workers share the work (SKIP LOCKED) and a crash only delays a look.
"""

from __future__ import annotations

import asyncio

import structlog

from fundhub.common.config import Settings
from fundhub.common.db import Pool
from fundhub.payouts import store
from fundhub.payouts.metrics import ALERTS
from fundhub.payouts.submitter import Submitter

log = structlog.get_logger(__name__)

CLAIM_LIMIT = 100


class Poller:
    def __init__(self, settings: Settings, pool: Pool, submitter: Submitter) -> None:
        self._settings = settings
        self._pool = pool
        self._submitter = submitter

    async def run(self) -> None:
        while True:
            try:
                looked = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: try again next tick
                log.error("payout_poll_failed", error=str(exc))
                looked = 0
            if looked < CLAIM_LIMIT:
                await asyncio.sleep(self._settings.payout_poll_interval_s)

    async def poll_once(self) -> int:
        """One round: alert the overdue, then look at up to CLAIM_LIMIT due payouts."""
        s = self._settings
        async with self._pool.acquire() as conn, conn.transaction():
            overdue = await store.mark_overdue(conn, CLAIM_LIMIT)
        for row in overdue:
            ALERTS.labels("deadline").inc()
            log.error(
                "payout_past_deadline",
                pay_id=row["pay_id"],
                deadline_at=str(row["deadline_at"]),
                note="no final state from the bank; kept PROCESSING, a person must check",
            )
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due(
                conn, CLAIM_LIMIT, s.payout_poll_base_s, s.payout_poll_max_s
            )
        if due:
            await asyncio.gather(*(self._submitter.follow(row) for row in due))
        return len(due)
