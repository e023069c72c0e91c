"""The dev supervisor as the operator runs it: the real ``fundhub up`` (defect 7 of issue 9).

A service SIGKILLed under it is started again, after a pause that doubles when it dies again
soon, while the others keep running and the stack keeps answering (a notification taken while
notify-ingest is down is applied once it is back); a SIGTERM to ``fundhub up`` stops every
service within a bound.

``fundhub up`` runs on the module's database and topic namespace with free ports for every
service. The session's Kafka and Postgres are already up, so it starts neither and stops
neither (it says "already running" or "external").
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.env import BIN, ROOT, ModuleEnv
from support.processes import _die_with_parent as die_with_parent
from support.processes import free_port
from support.transfers import records_with_prefix

from e2e.conftest import wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_many

pytestmark = pytest.mark.slow

# The ports of the services `fundhub up` starts outside dev mode (it prints where each listens).
PORTS = {
    "FUNDHUB_GATEWAY_PORT",
    "FUNDHUB_GATEWAY_OPS_PORT",
    "FUNDHUB_NOTIFY_INGEST_PORT",
    "FUNDHUB_CALLBACK_DISPATCHER_PORT",
    "FUNDHUB_AUDIT_WRITER_PORT",
    "FUNDHUB_PAYMENT_WORKER_PORT",
    "FUNDHUB_BANK_SIMULATOR_PORT",
}
# SIGTERM to `fundhub up`: each service is sent SIGTERM in turn and stops in a second or two
# (a service that would not is killed after the supervisor's 10 s grace).
STOP_BOUND_S = 30.0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def runs_service(pid: int, name: str) -> bool:
    """``pid`` is still ``name``'s process: a pid of one that died long ago may have been
    given to anything since (another test's Kafka broker), which must not be killed."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return alive(pid) and any(
        part.decode(errors="replace").endswith(f"/fundhub-{name}") for part in argv
    )


@dataclass
class Up:
    """A running ``fundhub up`` and its output in ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self, service: str) -> list[str]:
        prefix = re.compile(rf"^{re.escape(service)}\s+\| (.*)$")
        return [m.group(1) for line in self.output().splitlines() if (m := prefix.match(line))]

    def pids(self, service: str) -> list[int]:
        """Every pid ``service`` was started with, in order."""
        return [
            int(m.group(1))
            for line in self.lines(service)
            if (m := re.fullmatch(r"started \(pid (\d+)\)", line))
        ]

    def services(self) -> dict[str, str]:
        """What it says it runs, in the order it started them: name -> base URL."""
        return {
            m.group(1): m.group(2)
            for line in self.output().splitlines()
            if (m := re.match(r"^fundhub \|   (\S+)\s+(http://\S+)", line))
        }


@pytest.fixture
def up(env: ModuleEnv) -> Iterator[Up]:
    log = env.tmp / "fundhub-up.log"
    environ = env.environ(
        **{name: str(free_port()) for name in PORTS},
        FUNDHUB_BANK_BASE_URL=f"http://127.0.0.1:{free_port()}",  # no payouts here
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "fundhub"), "up"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    running = Up(proc, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for name in running.services():  # nothing left behind, whatever the test did
            for pid in running.pids(name):
                if runs_service(pid, name):
                    os.kill(pid, signal.SIGKILL)


async def ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(f"{url}/readyz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


# The Kafka consumers each service runs (BatchConsumer), all asked to stop on SIGTERM.
CONSUMERS_OF = {
    "notify-ingest": 2,
    "payment-worker": 6,
    "callback-dispatcher": 1,
    "audit-writer": 1,
}


async def test_a_killed_service_is_restarted_with_backoff_and_sigterm_stops_all(
    up: Up, env: ModuleEnv
) -> None:
    env.register_bank_app()
    async with httpx.AsyncClient() as client:

        async def announced() -> bool:
            assert up.proc.poll() is None, up.output()
            return "Ctrl-C stops everything." in up.output()

        await wait_until(announced, timeout_s=60, interval_s=0.2)
        urls = up.services()
        assert {"gateway", "notify-ingest", "payment-worker", "callback-dispatcher"} <= set(urls)

        async def all_ready() -> bool:
            assert up.proc.poll() is None, up.output()
            return all([await ready(client, url) for url in urls.values()])

        await wait_until(all_ready, timeout_s=90, interval_s=0.5)
        assert "already running" in up.output() or "external" in up.output()
        first = {name: up.pids(name) for name in urls}
        assert all(len(p) == 1 for p in first.values()), first

        # The gateway answers all along: a prober that notes every failure.
        failures: list[str] = []
        probing = True

        async def probe() -> None:
            while probing:
                try:
                    response = await client.get(f"{urls['gateway']}/readyz", timeout=2)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                await asyncio.sleep(0.1)

        prober = asyncio.create_task(probe())
        try:
            # A crash: notify-ingest SIGKILLed. The gateway still takes the bank's notification
            # (it only needs Kafka); the restarted notify-ingest applies it.
            ingest = first["notify-ingest"][0]
            killed_at = time.monotonic()
            os.kill(ingest, signal.SIGKILL)
            specs = [
                TransferSpec(
                    record_id="up-crash-0", in_acct_no="6222300000000001", trans_amount=1234
                )
            ]
            (params,) = build_many(specs, env.app_id, env.bank.private_pem)
            taken = await client.post(f"{urls['gateway']}/callbacks/bank", json=params)
            assert taken.text == "success", taken.text

            async def restarted(times: int = 2) -> bool:
                return len(up.pids("notify-ingest")) >= times

            await wait_until(restarted, timeout_s=30)
            second_start = time.monotonic()
            assert "exited with code -9; restarting in 0.5s" in up.lines("notify-ingest")
            assert up.pids("notify-ingest")[1] != ingest and not alive(ingest)
            await wait_until(lambda: ready(client, urls["notify-ingest"]), timeout_s=60)

            async def applied() -> bool:
                return await records_with_prefix(env.pool, "up-crash-") == 1

            await wait_until(applied, timeout_s=30)

            # Dead again soon after: the pause doubles.
            os.kill(up.pids("notify-ingest")[1], signal.SIGKILL)
            killed_again_at = time.monotonic()
            await wait_until(lambda: restarted(3), timeout_s=30)
            assert "exited with code -9; restarting in 1.0s" in up.lines("notify-ingest")
            assert time.monotonic() - killed_again_at >= 1.0
            assert second_start - killed_at < 10
            await wait_until(lambda: ready(client, urls["notify-ingest"]), timeout_s=60)
        finally:
            probing = False
            await prober
        assert failures == [], failures[:5]
        # The others never stopped: the same processes, still running, none started again.
        for name in urls:
            if name != "notify-ingest":
                assert up.pids(name) == first[name], (name, up.lines(name)[-5:])
                assert alive(first[name][0]), name
        assert up.proc.poll() is None, "fundhub up itself must go on"

    # SIGTERM to `fundhub up`: every service stopped, within the bound, and it exits 0.
    everyone = [pid for name in urls for pid in up.pids(name)]
    stopping = time.monotonic()
    up.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(up.proc.wait, STOP_BOUND_S)
    took = time.monotonic() - stopping
    assert code == 0, up.output()[-3000:]
    assert [pid for pid in everyone if alive(pid)] == []
    # Newest first, as started: the restarted notify-ingest still after the gateway feeding it.
    stopped = [
        line.split()[0]
        for line in up.output().splitlines()
        if re.search(r"\| stopped \(code", line)
    ]
    assert stopped == list(reversed(urls)), stopped
    print(f"fundhub up stopped {len(urls)} services in {took:.1f}s")
    assert took < STOP_BOUND_S
    # Each consumer was asked to stop (the batch in hand finished, its offsets committed),
    # not cancelled mid-fetch.
    for name, consumers in CONSUMERS_OF.items():
        ended = [line for line in up.lines(name) if '"consumer_stopped"' in line]
        assert len(ended) >= consumers and all('"asked":true' in e for e in ended[-consumers:]), (
            name,
            ended,
        )
