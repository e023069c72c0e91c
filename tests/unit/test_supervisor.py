"""The dev supervisor (`fundhub up`): a crashed service is started again with backoff, and the
others keep running; a stop still stops them all."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path

from fundhub.cli.devstack.stack import stop_grace_s
from fundhub.cli.devstack.supervisor import ServiceSpec, Supervisor
from fundhub.common.config import Settings

STEADY = "import time\nprint('up', flush=True)\ntime.sleep(3600)\n"


def crash_twice(marker: Path) -> str:
    """Exits with 3 on its first two runs, then stays up."""
    return (
        "import pathlib, sys, time\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "runs = int(m.read_text()) if m.exists() else 0\n"
        "m.write_text(str(runs + 1))\n"
        "if runs < 2:\n    sys.exit(3)\n"
        "print('up at last', flush=True)\ntime.sleep(3600)\n"
    )


async def running_until_up(supervisor: Supervisor, out: io.StringIO) -> asyncio.Task[int]:
    """The supervisor running, once the flaky service stayed up (its third run)."""
    run = asyncio.create_task(supervisor.run())
    deadline = time.monotonic() + 30
    while "up at last" not in out.getvalue():
        assert not run.done(), out.getvalue()
        assert time.monotonic() < deadline, out.getvalue()
        await asyncio.sleep(0.05)
    return run


async def test_a_crashed_service_is_restarted_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs"
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ServiceSpec("steady", [sys.executable, "-c", STEADY]),
            ServiceSpec("flaky", [sys.executable, "-c", crash_twice(marker)]),
        ],
        out=out,
        grace_s=2.0,
        restart_base_s=0.1,
    )
    run = await running_until_up(supervisor, out)
    assert supervisor.restarts == {"flaky": 2}
    steady = [c for c in supervisor._children if c.spec.name == "steady"]
    assert steady and steady[0].proc.returncode is None, "the others kept running"
    text = out.getvalue()
    assert "restarting in 0.1s" in text and "restarting in 0.2s" in text  # doubling
    supervisor.request_stop()
    assert await asyncio.wait_for(run, 20) == 0
    assert all(c.proc.returncode is not None for c in supervisor._children)


async def test_a_restarted_service_keeps_its_place_in_the_stop_order(tmp_path: Path) -> None:
    """Stopped newest first, as started: a service started again is not thereby the newest
    (notify-ingest restarted must still stop after the gateway that feeds it)."""
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ServiceSpec("first", [sys.executable, "-c", crash_twice(tmp_path / "runs")]),
            ServiceSpec("second", [sys.executable, "-c", STEADY]),
        ],
        out=out,
        grace_s=2.0,
        restart_base_s=0.05,
    )
    run = await running_until_up(supervisor, out)
    supervisor.request_stop()
    assert await asyncio.wait_for(run, 20) == 0
    stops = [line.split()[0] for line in out.getvalue().splitlines() if "| stopped" in line]
    assert stops == ["second", "first"], out.getvalue()


def test_restart_delay_doubles_up_to_the_cap() -> None:
    supervisor = Supervisor([], restart_base_s=0.5, restart_max_s=4.0)
    assert [supervisor.restart_delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


async def test_without_restart_the_first_exit_stops_everything() -> None:
    supervisor = Supervisor(
        [
            ServiceSpec("steady", [sys.executable, "-c", STEADY]),
            ServiceSpec("dies", [sys.executable, "-c", "import sys; sys.exit(5)"]),
        ],
        out=io.StringIO(),
        grace_s=2.0,
        restart=False,
    )
    assert await asyncio.wait_for(supervisor.run(), 20) == 1


def test_ctrl_c_waits_past_the_services_own_stop_deadline() -> None:
    for deadline in (1.0, 20.0, 45.0):
        settings = Settings(stop_deadline_s=deadline)
        assert stop_grace_s(settings) > deadline
