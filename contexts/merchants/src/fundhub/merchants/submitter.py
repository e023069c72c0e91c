"""Sending depository requests and recording what the bank answers.

A request goes to the bank after the transaction that queued it committed (from the command
consumer, or from the poller when that never happened): a slow bank never holds a lock. The
usual answer, PROCESSING, is noted (the result follows as a notification); a final one (a
micro-deposit's confirmation is answered at once) is settled like a notified result, in its own
short transaction, where a notification that raced it makes the later of the two a duplicate.
No answer is never a failure: the request stays as it is and the poller asks again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from fundhub.common.db import Pool, Row
from fundhub.common.topics import Topics
from fundhub.merchants import changes, store
from fundhub.merchants.depository import (
    DepositoryAnswer,
    DepositoryRefused,
    DepositoryRequest,
    DepositoryUnavailable,
    MemberDepository,
    snake_case,
)
from fundhub.merchants.metrics import DEPOSITORY_CALLS
from fundhub.merchants.states import RequestKind, ResultStatus

log = structlog.get_logger(__name__)

# Refusals that prove the bank made nothing of the request: it fails with the bank's reason.
_NOTHING_MADE = frozenset({400, 422})


class Submitter:
    def __init__(
        self,
        pool: Pool,
        topics: Topics,
        depository: MemberDepository,
        notify_url: str,
        concurrency: int = 16,
    ) -> None:
        self._pool = pool
        self._topics = topics
        self._depository = depository
        self._notify_url = notify_url
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit_later(self, rows: list[Row]) -> None:
        """Send in the background: the consumer goes on while the bank takes its time."""
        for row in rows:
            task = asyncio.create_task(self.submit(row), name=f"merchant-{row['request_id']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, row: Row) -> None:
        async with self._slots:
            try:
                await self._submit(row)
            except Exception:  # the poller asks again; a bug must not kill the worker
                log.exception("merchant_request_not_sent", request_id=row["request_id"])

    async def follow(self, row: Row) -> None:
        """The poller's look at a request sent before: ask; never received -> send again."""
        async with self._slots:
            request_id = row["request_id"]
            try:
                answer = await self._depository.query(request_id)
            except (DepositoryUnavailable, DepositoryRefused) as exc:
                DEPOSITORY_CALLS.labels("query", _outcome(exc)).inc()
                log.warning("merchant_request_query_failed", request_id=request_id, error=str(exc))
                return
            if answer is None:
                DEPOSITORY_CALLS.labels("query", "not-found").inc()
                log.info("merchant_request_not_at_bank_resending", request_id=request_id)
                await self._submit(row)
                return
            DEPOSITORY_CALLS.labels("query", answer.status.value.lower()).inc()
            await self._record(row, answer)

    async def _submit(self, row: Row) -> None:
        request_id = row["request_id"]
        request = await self._request(row)
        try:
            answer = await self._depository.submit(request)
        except DepositoryUnavailable as exc:
            DEPOSITORY_CALLS.labels("submit", "unavailable").inc()
            log.warning("merchant_request_unanswered", request_id=request_id, error=str(exc))
            return
        except DepositoryRefused as exc:
            DEPOSITORY_CALLS.labels("submit", "refused").inc()
            log.error("merchant_request_refused", request_id=request_id, error=str(exc))
            if exc.status_code in _NOTHING_MADE:
                reason = f"the depository refused the request: {exc.reason}"
                await self._record(row, DepositoryAnswer(request_id, ResultStatus.FAILED, reason))
            return
        DEPOSITORY_CALLS.labels("submit", answer.status.value.lower()).inc()
        await self._record(row, answer)

    async def _record(self, row: Row, answer: DepositoryAnswer) -> None:
        request_id = row["request_id"]
        async with self._pool.acquire() as conn, conn.transaction():
            if not answer.final:
                await store.mark_sent(conn, request_id)
                return
            await changes.settle(
                conn,
                self._topics,
                request_id,
                answer.status,
                answer.reason,
                answer.member_no,
                f"depository-answer:{request_id}",
            )

    async def _request(self, row: Row) -> DepositoryRequest:
        """The request as the bank takes it, built from what the API stored (never changed
        after, so a resend is byte for byte the same request)."""
        kind = RequestKind(row["kind"])
        merchant_id = row["merchant_id"]
        details: dict[str, Any] = {}
        async with self._pool.acquire() as conn:
            if kind in (RequestKind.OPEN, RequestKind.MATERIALS, RequestKind.REGISTER):
                materials = await store.version_materials(conn, merchant_id, row["version"])
                details = {"version": str(row["version"]), "materials": snake_case(materials)}
            elif kind is RequestKind.BIND:
                binding = await store.binding(conn, row["binding_id"])
                assert binding is not None
                details = {
                    "account": {
                        "account_no": binding["account_no"],
                        "account_name": binding["account_name"],
                        "bank_name": binding["bank_name"],
                    }
                }
            elif kind is RequestKind.CONFIRM:
                details = {
                    "bind_request_id": await store.bind_request_of(conn, row["binding_id"]),
                    "amount": str(row["amount"]),
                }
        return DepositoryRequest(request_id(row), kind, merchant_id, self._notify_url, details)


def request_id(row: Row) -> str:
    value: str = row["request_id"]
    return value


def _outcome(exc: DepositoryUnavailable | DepositoryRefused) -> str:
    return "unavailable" if isinstance(exc, DepositoryUnavailable) else "refused"
