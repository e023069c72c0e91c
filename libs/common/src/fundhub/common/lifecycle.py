"""How a worker process lives: its tasks run until SIGINT/SIGTERM or until one of them ends.

Shutdown is bounded: once it begins, a watchdog thread ends the process after a deadline
whatever its tasks do (a task that swallows cancellation, a close that waits on a dead peer, a
loop blocked by CPU work all once kept a process alive for over a minute after SIGTERM, its
health port still answering). A thread, not a timer of the event loop, because the loop may be
the thing that is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

# The exit status of a process ended by the watchdog (that of timeout(1)).
EXIT_STOP_OVERDUE = 124


class StopDeadline:
    """Ends the process ``seconds`` after ``start``, unless ``cancel`` comes first."""

    def __init__(self, seconds: float, exit: Callable[[int], object] = os._exit) -> None:
        self.seconds = seconds
        self._exit = exit
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        sys.stderr.write(
            f'{{"event":"stop_overdue","level":"error","deadline_s":{self.seconds}}}\n'
        )
        sys.stderr.flush()
        self._exit(EXIT_STOP_OVERDUE)


async def run_until_stopped(
    tasks: Sequence[asyncio.Task[Any]],
    drain: Callable[[], Awaitable[None]] | None = None,
    *,
    deadline: StopDeadline | None = None,
    on_stop: Callable[[], None] | None = None,
) -> asyncio.Task[Any] | None:
    """Wait for a stop signal or the first task to end; then ``on_stop`` (readiness off),
    start the ``deadline``, drain, cancel the rest, and return the task that failed (a worker
    whose consumer died must exit, not idle). A task that ignores its cancellation is left
    behind once the deadline's time is spent; the caller cancels the deadline when done."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    if on_stop is not None:
        on_stop()
    budget = None
    if deadline is not None:
        deadline.start()
        budget = deadline.seconds
    if drain is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(drain(), None if budget is None else budget / 2)
    for task in [*tasks, stopper]:
        task.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=None if budget is None else budget / 2)
    failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
    return failed[0] if failed else None


def exit_if_failed(failed: asyncio.Task[Any] | None) -> None:
    if failed is not None:
        raise SystemExit(f"{failed.get_name()} failed: {failed.exception()!r}")
