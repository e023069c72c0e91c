"""Following depository requests nobody has finished: send the unsent, ask about the sent.

The bank notifies every result, so this is the safety net: a request whose command was lost
before it was sent (a crash between the commit and the call), a bank that was away when it was
sent, a notification the bank gave up on. A claim pushes the request's next look back
(exponential backoff) and commits before any call to the bank, so several workers share the work
(SKIP LOCKED) and a crash only delays a look.
"""

from __future__ import annotations

import asyncio

import structlog

from fundhub.common.config import Settings
from fundhub.common.db import Pool
from fundhub.merchants import store
from fundhub.merchants.submitter import Submitter

log = structlog.get_logger(__name__)

CLAIM_LIMIT = 50


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
                log.error("merchant_poll_failed", error=str(exc))
                looked = 0
            if looked < CLAIM_LIMIT:
                await asyncio.sleep(self._settings.payout_poll_interval_s)

    async def poll_once(self) -> int:
        s = self._settings
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due(
                conn, CLAIM_LIMIT, s.merchant_poll_base_s, s.merchant_poll_max_s, s.bank_app_id
            )
        await asyncio.gather(
            *(
                self._submitter.submit(row)
                if row["state"] == "QUEUED"
                else self._submitter.follow(row)
                for row in due
            )
        )
        return len(due)
