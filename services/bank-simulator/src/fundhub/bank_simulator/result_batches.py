"""Results reported in batches, per ``notify_url``, as banks commonly report them: the results
due for one address within a few milliseconds go out as one notification, so one RSA signature
and one POST serve many. Payout results and split results are gathered alike.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

# How long a sender waits after the first queued result before taking the queue: the results
# settling meanwhile share its signature (about 1 ms of CPU) and its POST. 20 ms add nothing a
# payout's owner could notice (the bank's own delays are tens of ms and more), yet under load
# they gather dozens of results; and while batches are in flight the queue fills on its own.
GATHER_S = 0.02
# Batches in flight at once per notify_url: a batch waiting out its retry interval does not
# hold up the results after it, and the receiver gets a few POSTs in parallel. Only when all
# of them are being retried (the receiver is down) do new results wait, for the first to end.
MAX_IN_FLIGHT = 4

Item = dict[str, str]
Spawn = Callable[[Coroutine[Any, Any, None], str], None]
Deliver = Callable[[str, list[Item]], Awaitable[None]]


@dataclass(eq=False)
class _Outbox:
    """The results waiting for one notify_url, and the sender loops working on them.

    At most one loop is ``gathering`` (waiting GATHER_S, then taking the queue), so results
    are never split between two half-empty batches; the others are delivering.
    """

    url: str
    queue: deque[Item] = field(default_factory=deque)
    loops: int = 0
    gathering: bool = False

    def take(self, limit: int) -> list[Item]:
        return [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]


class ResultOutboxes:
    """``enqueue(url, item)``; batches of at most ``max_batch`` go to ``deliver(url, batch)``,
    in loops started by ``spawn`` (the notifier's, which cancels them when it stops)."""

    def __init__(self, spawn: Spawn, deliver: Deliver, max_batch: int) -> None:
        self._spawn = spawn
        self._deliver = deliver
        self._max_batch = max_batch
        self._outboxes: dict[str, _Outbox] = {}

    def enqueue(self, url: str, item: Item) -> None:
        outbox = self._outboxes.get(url)
        if outbox is None:
            outbox = self._outboxes[url] = _Outbox(url)
        outbox.queue.append(item)
        self._wake(outbox)

    def forget(self) -> None:
        """Drop every queue (the notifier stopped and cancelled the loops working on them)."""
        self._outboxes.clear()

    def _wake(self, outbox: _Outbox) -> None:
        """Start a loop to gather the queue, unless one is gathering or all are delivering
        (one of those takes the queue when its delivery ends)."""
        if outbox.queue and not outbox.gathering and outbox.loops < MAX_IN_FLIGHT:
            outbox.loops += 1
            outbox.gathering = True
            self._spawn(self._send_loop(outbox), f"cb-batch-{outbox.url}")

    async def _send_loop(self, outbox: _Outbox) -> None:
        """Gather, take, deliver; again while results wait and no other loop gathers them."""
        try:
            while True:
                await asyncio.sleep(GATHER_S)
                batch = outbox.take(self._max_batch)
                outbox.gathering = False
                self._wake(outbox)  # more than a batch was queued: the rest starts gathering
                if batch:
                    await self._deliver(outbox.url, batch)
                if outbox.gathering or not outbox.queue:
                    return
                outbox.gathering = True
        finally:
            outbox.loops -= 1
