"""The one way a consumer process runs, so that every worker stops, drains and fails alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from fundhub.common import tracing
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
    gentle: Mapping[str, Callable[[], None]] | None = None,
    close: Sequence[Callable[[], Awaitable[object]]] = (),
    stop_deadline_s: float | None = None,
) -> None:
    """Run ``work`` (a task per name) beside the operations endpoints until SIGINT/SIGTERM or
    until one task ends; then ``drain`` (given the tasks, still running), cancel the rest,
    ``close`` in order, and exit non-zero when a task failed: a worker whose consumer died
    must exit, not idle. ``service`` names the ``<service>_started``/``_stopped`` log events.

    ``gentle`` names the tasks that end by themselves when asked (a consumer's ``stop``: the
    batch in hand finished, its offsets committed): on the stop they are asked first and
    awaited, before ``drain`` and before anything is cancelled. A cancellation that lands inside
    aiokafka's fetch has been seen to go unnoticed; asking does not depend on it.

    From the stop on, ``/readyz`` answers 503 (a balancer stops sending work), and the whole
    shutdown is bounded by ``stop_deadline_s`` (``FUNDHUB_STOP_DEADLINE_S``).
    """
    asked = dict(gentle or {})
    unknown = set(asked) - set(work)
    if unknown:
        raise ValueError(f"gentle stops for tasks that do not exist: {sorted(unknown)}")
    stopping = asyncio.Event()
    seconds = get_settings().stop_deadline_s if stop_deadline_s is None else stop_deadline_s
    deadline = StopDeadline(seconds)
    tasks = {name: asyncio.create_task(coro, name=name) for name, coro in work.items()}
    health = serve_health(dict(checks), host, port, stopping.is_set)
    running = [*tasks.values(), asyncio.create_task(health, name="health")]
    log.info(f"{service}_started", health_port=port)

    async def stop_then_drain() -> None:
        for ask in asked.values():
            ask()
        if asked:
            await asyncio.wait([tasks[name] for name in asked])
        if drain is not None:
            await drain(tasks)

    failed = await run_until_stopped(
        running,
        stop_then_drain if asked or drain is not None else None,
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
    """A worker's console script: its settings, its JSON logs (and traces, when configured)
    named ``service``, on uvloop."""
    settings = get_settings()
    configure_logging(service, settings.log_level)
    tracing.configure(settings.otlp_endpoint, service)
    import uvloop

    try:
        uvloop.run(run(settings))
    finally:
        tracing.shutdown()
