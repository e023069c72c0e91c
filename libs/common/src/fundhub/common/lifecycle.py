"""How a worker process lives: its tasks run until SIGINT/SIGTERM or until one of them ends."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


async def run_until_stopped(
    tasks: Sequence[asyncio.Task[Any]],
    drain: Callable[[], Awaitable[None]] | None = None,
) -> asyncio.Task[Any] | None:
    """Wait for a stop signal or the first task to end; then drain, cancel the rest, and
    return the task that failed (a worker whose consumer died must exit, not idle)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    if drain is not None:
        with contextlib.suppress(Exception):
            await drain()
    for task in [*tasks, stopper]:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
    return failed[0] if failed else None


def exit_if_failed(failed: asyncio.Task[Any] | None) -> None:
    if failed is not None:
        raise SystemExit(f"{failed.get_name()} failed: {failed.exception()!r}")
