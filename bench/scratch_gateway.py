"""Processes of a benchmark's own, on the running Kafka and PostgreSQL (`fundhub infra up`).

A benchmark that compares settings or code needs no `make up`: a scratch database and topic
namespace (``create_scratch``, ``scratch_env``, ``drop_scratch``), the services started on free
ports (``free_port``, ``wait_ready``), driven by the light load client (``measure``), their CPU
read from /proc (``cpu_seconds``: the figure that holds up on a shared machine, where
wall-clock rates move with everyone else's load). ``Scratch`` and ``GatewayProcess`` put these
together for gateways compared side by side (bench/security_overhead.py): a migrated scratch
with a bank app and an API key, and `fundhub-gateway` with whatever settings differ.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from fundhub.common import migrations
from fundhub.common.config import Settings
from fundhub.common.kafka import ensure_topics
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair
from fundhub.common.topics import topics

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection  # noqa: E402
from notify_e2e import open_connections, pct, run_workers  # noqa: E402

APP_ID = "20990101000000000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return os.getloadavg()[0]


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "fundhub"), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"fundhub {' '.join(args)}: {done.stderr}")
    return done.stdout


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def measure(
    url: str,
    requests: list[bytes],
    concurrency: int,
    pid: int,
    ok: int,
    rate: float | None = None,
) -> dict[str, float]:
    """Every request over ``concurrency`` keep-alive connections, as fast as answered or, with
    ``rate``, the k-th request sent at k/rate s (open loop, as long as a connection is free):
    the rate achieved, latencies, answers other than ``ok``, and the CPU per request of the
    process ``pid`` while they ran (and the machine's load average at the end)."""
    latencies: list[float] = []
    failures = 0
    sent = 0
    connections = await open_connections(urlsplit(url), concurrency)

    async def worker(connection: LoadConnection) -> None:
        nonlocal failures, sent
        while sent < len(requests):
            k, sent = sent, sent + 1
            if rate:
                delay = t0 + k / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            started = time.perf_counter()
            status, _ = await connection.send(requests[k])
            latencies.append((time.perf_counter() - started) * 1000)
            failures += status != ok

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await run_workers(connections, worker)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return {
        "rate": round(len(requests) / elapsed, 1),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
        "cpu_us_per_request": round(cpu / len(requests) * 1e6, 1),
        "failures": failures,
        "load": load_average(),
    }


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError("gateway exited")
            try:
                if (await client.get(url + "/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("gateway not ready")


async def create_scratch(base: Settings, database: str) -> str:
    """A fresh database on the running Postgres; its URL."""
    admin = await asyncpg.connect(base.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return base.database_url.rsplit("/", 1)[0] + f"/{database}"


def scratch_env(base: Settings, dsn: str, namespace: str) -> dict[str, str]:
    """This process's environment without its FUNDHUB_ settings, pointed at the scratch
    database and topic namespace of the running Kafka and Postgres."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
    env.update(
        FUNDHUB_DATABASE_URL=dsn,
        FUNDHUB_KAFKA_BOOTSTRAP=base.kafka_bootstrap,
        FUNDHUB_TOPIC_NAMESPACE=namespace,
        FUNDHUB_LOG_LEVEL="WARNING",
    )
    return env


async def drop_scratch(base: Settings, database: str, namespace: str) -> None:
    """Drop what ``create_scratch`` made and the namespace's topics."""
    admin = await asyncpg.connect(base.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()
    kafka = AIOKafkaAdminClient(bootstrap_servers=base.kafka_bootstrap)
    await kafka.start()
    try:
        names = topics(Settings(topic_namespace=namespace)).all()
        existing = set(await kafka.list_topics())
        await kafka.delete_topics([n for n in names if n in existing])
    finally:
        await kafka.close()


class Scratch:
    """A scratch database and namespace for gateways (async context manager): migrated, its
    topics made, a bank app (``APP_ID``, its private key in ``bank_private_pem``) and an API key
    with ``payouts:write`` on every account (``key_id``, ``secret``)."""

    def __init__(self, tag: str) -> None:
        self.base = Settings()
        run = uuid.uuid4().hex[:8]
        self.database = f"fundhub_bench_{tag}_{run}"
        self.namespace = f"bench-{tag}-{run}"
        self.workdir = ROOT / "bench/results" / self.namespace
        self.environ: dict[str, str] = {}
        self.bank_private_pem = self.key_id = self.secret = ""

    def cli(self, *args: str) -> str:
        return cli(self.environ, *args)

    async def __aenter__(self) -> Scratch:
        # What the migrations and topic creation log is not the benchmark's output (--json).
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
        dsn = await create_scratch(self.base, self.database)
        self.environ = scratch_env(self.base, dsn, self.namespace)
        self.environ.update(FUNDHUB_ENV="test", FUNDHUB_MASTER_KEY=generate_master_key())
        await migrations.migrate(dsn)
        await ensure_topics(self.base.model_copy(update={"topic_namespace": self.namespace}))
        self.bank_private_pem, public_pem = generate_rsa_keypair()
        pem = write(self.workdir / "bank.pem", public_pem)
        self.cli("bank-app", "add", "--app-id", APP_ID, "--public-key", str(pem))
        key = json.loads(
            self.cli("api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                     "--accounts", "*", "--json")
        )  # fmt: skip
        self.key_id, self.secret = key["keyId"], key["secret"]
        return self

    async def __aexit__(self, *_: object) -> None:
        await drop_scratch(self.base, self.database, self.namespace)


class GatewayProcess:
    """`fundhub-gateway` on free API and operations ports, with ``overrides`` of the scratch
    settings; its log goes to ``log``. ``executable``: another checkout's, to compare code."""

    def __init__(
        self,
        scratch: Scratch,
        overrides: dict[str, str],
        log: Path,
        executable: Path = BIN / "fundhub-gateway",
    ) -> None:
        self.port = free_port()
        env = {
            **scratch.environ,
            "FUNDHUB_GATEWAY_PORT": str(self.port),
            "FUNDHUB_GATEWAY_OPS_PORT": str(free_port()),
            **overrides,
        }
        self.proc = subprocess.Popen(
            [str(executable)],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self) -> None:
        await wait_ready(self.url, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
