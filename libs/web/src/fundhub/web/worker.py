"""The one way a consumer process runs, so that every worker stops, drains and fails alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any

import structlog

from fundhub.common.config import Settings, get_settings
from fundhub.common.lifecycle import StopDeadline, exit_if_failed, run_until_stopped
from fundhub.common.logging import configure_logging
from fundhub.web.health import ReadinessCheck, serve_health

log = structlog.get_logger(__name__)

Tasks = Mapping[str, asyncio.Task[Any]]
Drain = Callable[[Tasks], Awaitable[None]]


async def run_worker(
    service: str,
    work: Mapping[str, Coroutine[Any, Any, Any]],
    checks: Mapping[str, ReadinessCheck],
    host: str,
    port: int,
    *,
    drain: Drain | None = None,
    close: Sequence[Callable[[], Awaitable[object]]] = (),
    stop_deadline_s: float | None = None,
) -> None:
    """Run ``work`` (a task per name) beside the operations endpoints until SIGINT/SIGTERM or
    until one task ends; then ``drain`` (given the tasks, still running), cancel the rest,
    ``close`` in order, and exit non-zero when a task failed: a worker whose consumer died
    must exit, not idle. ``service`` names the ``<service>_started``/``_stopped`` log events.

    From the stop on, ``/readyz`` answers 503 (a balancer stops sending work), and the whole
    shutdown is bounded by ``stop_deadline_s`` (``FUNDHUB_STOP_DEADLINE_S``).
    """
    stopping = asyncio.Event()
    seconds = get_settings().stop_deadline_s if stop_deadline_s is None else stop_deadline_s
    deadline = StopDeadline(seconds)
    tasks = {name: asyncio.create_task(coro, name=name) for name, coro in work.items()}
    health = serve_health(dict(checks), host, port, stopping.is_set)
    running = [*tasks.values(), asyncio.create_task(health, name="health")]
    log.info(f"{service}_started", health_port=port)
    failed = await run_until_stopped(
        running,
        None if drain is None else partial(drain, tasks),
        deadline=deadline,
        on_stop=stopping.set,
    )
    for closing in close:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing(), seconds)
    log.info(f"{service}_stopped")
    # The deadline stays armed: the event loop's own end still waits on any task that
    # ignored its cancellation.
    exit_if_failed(failed)


def start_worker(service: str, run: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """A worker's console script: its settings, its JSON logs named ``service``, on uvloop."""
    settings = get_settings()
    configure_logging(service, settings.log_level)
    import uvloop

    uvloop.run(run(settings))
