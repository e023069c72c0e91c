"""Group commit: what concurrent requests write goes to Postgres in one statement.

Each statement costs a round trip, a commit and a WAL flush, on top of its rows; under load most
of the gateway's and the database's work per payout was that overhead. Requests queue their
items; one writer at a time takes everything queued (up to ``max_batch``) and runs it as one
statement, so a batch forms by itself while the previous one runs, and an idle gateway writes
each request at once, with no timer.

Where each run has a cost of its own far above its items' (a Kafka send: about a millisecond of
the gateway's CPU), ``min_interval_s`` spaces the runs' starts: while runs come back faster than
that, the next waits for the rest of the interval and takes everything queued meanwhile. A lone
item after a quiet spell still goes at once, and when runs take longer than the interval (a
busy broker) nothing waits at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``submit(item)`` returns ``item``'s result from ``run(batch)`` (results in batch order).

    Items with the same ``conflict_key`` never share a batch (the later one waits for the next),
    for statements that cannot tell two such items apart. When a batch fails, its items are run
    again one by one, so one item the database refuses fails only its own request.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        conflict_key: Callable[[T], Hashable],
        max_batch: int = 200,
        min_interval_s: float = 0.0,
    ) -> None:
        self._run = run
        self._conflict_key = conflict_key
        self._max_batch = max_batch
        self._min_interval_s = min_interval_s
        self._last_start = float("-inf")
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="group-commit")
            self._writer.add_done_callback(self._writer_done)
        return await future

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        """A writer cancelled before its first step ran no ``finally``: free its callers."""
        if not writer.cancelled():
            return
        if self._writer is writer:
            self._writer = None
        queued, self._queue = self._queue, []
        for _, future in queued:
            future.cancel()

    async def _write_all(self) -> None:
        try:
            while self._queue:
                if self._min_interval_s:
                    loop = asyncio.get_running_loop()
                    early = self._last_start + self._min_interval_s - loop.time()
                    if early > 0 and len(self._queue) < self._max_batch:
                        await asyncio.sleep(early)
                    self._last_start = loop.time()
                await self._write(self._take())
        finally:
            self._writer = None

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        left: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            key = self._conflict_key(entry[0])
            if len(batch) >= self._max_batch or key in keys:
                left.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._queue = left
        return batch

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning("group_commit_batch_failed", size=len(batch), error=str(exc))
            for entry in batch:  # alone, each gets its own answer
                await self._write([entry])
            return
        except BaseException:  # cancelled while stopping: no caller waits forever
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
