"""What every notifier of the bank runs on (payout results, split results, member results): one
HTTP client, the background tasks that decide and deliver, and a sender per ``notify_url``.

Usable between ``async with notifier.running():`` and its end, which cancels what is still
pending: the simulated bank forgets its unsent notifications when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from fundhub.bank_simulator.result_batches import Deliver, ResultOutboxes
from fundhub.bank_simulator.sender import BankSender, DeliveryObserver, client_session


class BankNotifier:
    """The session, tasks, senders and result batches of the ``what`` notifier."""

    def __init__(
        self,
        what: str,
        max_connections: int,
        *,
        retries: int = 3,
        retry_interval_s: float = 180.0,
        timeout_s: float = 10.0,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._what = what
        self._max_connections = max_connections
        self._retries = retries
        self._retry_interval_s = retry_interval_s
        self._timeout_s = timeout_s
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None
        self._senders: dict[str, BankSender] = {}
        self._batches: list[ResultOutboxes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_running(self) -> bool:
        return self._session is not None

    @property
    def pending(self) -> int:
        """Background work not finished yet (a queued result always has a loop about to
        take it)."""
        return len(self._tasks)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"the {self._what} notifier is not running")
        return self._session

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with client_session(self._max_connections) as session:
            self._session = session
            try:
                yield
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._tasks.clear()
                self._senders.clear()
                for outboxes in self._batches:
                    outboxes.forget()
                self._session = None

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (tests, orderly stops); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    def result_batches(self, deliver: Deliver, max_batch: int) -> ResultOutboxes:
        """Results gathered per notify_url into batches of at most ``max_batch`` for
        ``deliver``, by this notifier's tasks; what is queued is forgotten when it stops."""
        outboxes = ResultOutboxes(self.spawn, deliver, max_batch)
        self._batches.append(outboxes)
        return outboxes

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background until it ends or the notifier stops."""
        if self._session is None:
            work.close()
            raise RuntimeError(f"the {self._what} notifier is not running")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def sender(self, url: str) -> BankSender:
        """The one sender for ``url`` this run, with the bank's retries."""
        sender = self._senders.get(url)
        if sender is None:
            sender = self._senders[url] = BankSender(
                self.session,
                url,
                retries=self._retries,
                retry_interval_s=self._retry_interval_s,
                timeout_s=self._timeout_s,
                observer=self._observer,
            )
        return sender
