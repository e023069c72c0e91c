"""A worker process stops within its deadline after SIGTERM, even when a task ignores its
cancellation, and its health port stops answering ready as soon as the stop begins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
from support.processes import free_port

from fundhub.common.lifecycle import EXIT_STOP_OVERDUE

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from fundhub.web.worker import run_worker

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # a task that will not stop

    async def slow_drain(tasks) -> None:
        await asyncio.sleep(1.0)

    async def main() -> None:
        await run_worker(
            "stubborn",
            {"stubborn": stubborn()},
            {},
            "127.0.0.1",
            int(sys.argv[1]),
            drain=slow_drain,
            stop_deadline_s=float(sys.argv[2]),

        )

    asyncio.run(main())
    """
)


def _ready(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code
    except httpx.HTTPError:
        return None


def test_stop_is_bounded_and_readiness_goes_first() -> None:
    port, deadline_s = free_port(), 3.0
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(port), str(deadline_s)],
        env={**env, "FUNDHUB_ENV": "test"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        started = time.monotonic()
        while _ready(port) != 200:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() - started < 30, "the worker never got ready"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        # During the drain the port still answers, but not "ready".
        time.sleep(0.3)
        assert _ready(port) in (503, None)
        code = proc.wait(timeout=deadline_s + 10)
        took = time.monotonic() - stopped_at
        assert took < deadline_s + 1.5, f"took {took:.1f}s to stop"
        assert code == EXIT_STOP_OVERDUE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
