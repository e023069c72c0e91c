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


GENTLE = textwrap.dedent(
    """
    import asyncio, sys
    from fundhub.web.worker import run_worker

    asked = asyncio.Event()

    async def consumer() -> None:
        try:
            await asked.wait()  # a batch loop that returns once asked
            print("ended-by-itself", flush=True)
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise

    async def drain(tasks) -> None:
        print("drain-after-gentle" if tasks["consumer"].done() else "drain-first", flush=True)

    async def main() -> None:
        await run_worker(
            "gentle",
            {"consumer": consumer()},
            {},
            "127.0.0.1",
            int(sys.argv[1]),
            drain=drain,
            gentle={"consumer": asked.set},
            stop_deadline_s=5.0,
        )

    asyncio.run(main())
    """
)


def test_a_gentle_task_is_asked_to_stop_and_awaited_before_drain_and_cancel() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", GENTLE, str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _ready(port) != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if line in {"ended-by-itself", "cancelled",
             "drain-after-gentle", "drain-first"}]  # fmt: skip
    assert lines == ["ended-by-itself", "drain-after-gentle"], out
