"""fundhub services as real OS processes, so tests can SIGKILL and restart them."""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from support.env import BIN, ModuleEnv


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: a service started by a test dies when the test runner dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_handed_out: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (and ``bind`` to port 0)."""
    try:
        low, high = (int(n) for n in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def reserve_ports(ports: list[int]) -> None:
    """Ports taken by other means (a cluster's run of them): ``free_port`` never hands them out."""
    _handed_out.update(ports)


def _worker_slice(low: int, high: int) -> tuple[int, int]:
    """This worker's share of the ports below the ephemeral range ``low``..``high``."""
    del high
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    width = max(0, low - _LOWEST) // max(1, count)
    return _LOWEST + index * width, _LOWEST + (index + 1) * width


def free_port() -> int:
    """A port free now, for a service to listen on seconds later, outside the ephemeral range.

    A port from that range (``bind`` to port 0) may meanwhile become the local end of any
    outgoing connection on the machine (to Kafka, Postgres, another test's services), and the
    service then cannot bind it: its module's setup fails now and then on a busy machine, or a
    restarted broker cannot take its port back. Drawn at random, so concurrent test runs seldom
    draw the same, and never the same twice in one run. Each xdist worker draws from its own
    slice: a port one worker's test let go for a while (a killed broker's, to be restarted on
    it) is never handed to a service of the other's."""
    first, last = _worker_slice(*ephemeral_range())
    for _ in range(1000):
        port = random.randrange(first, last) if last > first + 1000 else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = s.getsockname()[1]
        _handed_out.add(chosen)
        return chosen
    raise AssertionError("no free port below the ephemeral range")


class Service:
    def __init__(
        self,
        env: ModuleEnv,
        name: str,
        command: str,
        port: int,
        args: tuple[str, ...] = (),
        **extra_env: str,
    ) -> None:
        self.env = env
        self.name = name
        self.command = command
        self.args = args
        self.port = port
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = env.tmp / f"{name}-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / self.command), *self.args],
            env=self.env.environ(**self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.tail()}")
                try:
                    response = await client.get(f"{self.url}/readyz", timeout=2)
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready in {timeout_s}s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM without waiting (``stop`` waits): to stop several at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float:
        """CPU time the running process has used so far; 0 when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        return cpu_seconds(self.proc.pid)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process so far, 0 when it is gone. Linux ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway(env: ModuleEnv, **extra_env: str) -> Service:
    port = free_port()
    return Service(
        env,
        "gateway",
        "fundhub-gateway",
        port,
        FUNDHUB_GATEWAY_PORT=str(port),
        FUNDHUB_GATEWAY_OPS_PORT=str(free_port()),
        **extra_env,
    )


def ops_url(service: Service) -> str:
    """The gateway's operations port (metrics, docs)."""
    return f"http://127.0.0.1:{service.extra_env['FUNDHUB_GATEWAY_OPS_PORT']}"


def channel_simulator(env: ModuleEnv, *args: str) -> Service:
    """The channel simulator; ``args``: its flags (``--time-factor``, ``--keys-dir``...)."""
    port = free_port()
    return Service(
        env,
        "channel-simulator",
        "fundhub-channel-simulator",
        port,
        args,
        FUNDHUB_CHANNEL_SIMULATOR_PORT=str(port),
    )


def notify_ingest(env: ModuleEnv, **extra_env: str) -> Service:
    port = free_port()
    return Service(
        env,
        "notify-ingest",
        "fundhub-notify-ingest",
        port,
        FUNDHUB_NOTIFY_INGEST_PORT=str(port),
        **extra_env,
    )


class WithArguments(Service):
    """A service started with command-line arguments (the simulator takes its rates so)."""

    def __init__(self, env: ModuleEnv, name: str, command: str, port: int, args: list[str]) -> None:
        super().__init__(env, name, command, port)
        self.args = args

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / self.command), *self.args],
            env=self.env.environ(**self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def callback_dispatcher(
    env: ModuleEnv,
    *,
    backoff_base_s: float,
    backoff_max_s: float,
    timeout_s: float | None = None,
    **extra_env: str,
) -> Service:
    """The dispatcher with a quick retry schedule (and, given, a shorter timeout per POST)."""
    port = free_port()
    timeout = {} if timeout_s is None else {"FUNDHUB_CALLBACK_TIMEOUT_S": str(timeout_s)}
    return Service(
        env,
        "callback-dispatcher",
        "fundhub-callback-dispatcher",
        port,
        FUNDHUB_CALLBACK_DISPATCHER_PORT=str(port),
        FUNDHUB_CALLBACK_BACKOFF_BASE_S=str(backoff_base_s),
        FUNDHUB_CALLBACK_BACKOFF_MAX_S=str(backoff_max_s),
        **timeout,
        **extra_env,
    )


@asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    """The service started and ready; stopped on the way out."""
    service.start()
    try:
        await service.wait_ready()
        yield service
    finally:
        service.stop()
