"""Gateways of a benchmark's own, on the running Kafka and PostgreSQL (`fundhub infra up`).

A benchmark that compares gateway settings needs no `make up`: ``Scratch`` makes a database and
a topic namespace of its own (migrated, with a bank app and an API key), ``GatewayProcess``
starts `fundhub-gateway` on free ports with whatever settings differ, and both are dropped after.
Nothing consumes what such a gateway publishes or writes: only the gateway's own work is
measured, and its CPU time (``cpu_seconds``, from /proc) is the figure that holds up on a
shared machine, where wall-clock rates move with everyone else's load.
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
from dataclasses import dataclass, field
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

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
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


@dataclass
class Scratch:
    """A database and topic namespace of one run: a bank app (``APP_ID``, its private key in
    ``bank_private_pem``) and an API key with ``payouts:write`` on every account."""

    tag: str
    settings: Settings = field(init=False)
    environ: dict[str, str] = field(init=False)
    bank_private_pem: str = ""
    key_id: str = ""
    secret: str = ""
    workdir: Path = field(init=False)

    def __post_init__(self) -> None:
        base = Settings()
        run = uuid.uuid4().hex[:8]
        head = base.database_url.rpartition("/")[0]
        self.settings = base.model_copy(
            update={
                "database_url": f"{head}/fundhub_bench_{self.tag}_{run}",
                "topic_namespace": f"bench-{self.tag}-{run}",
                "master_key": generate_master_key(),
            }
        )
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
        self.environ.update(
            FUNDHUB_ENV="test",
            FUNDHUB_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            FUNDHUB_DATABASE_URL=self.settings.database_url,
            FUNDHUB_TOPIC_NAMESPACE=self.settings.topic_namespace,
            FUNDHUB_MASTER_KEY=self.settings.master_key or "",
            FUNDHUB_LOG_LEVEL="WARNING",
        )
        self.workdir = ROOT / "bench/results" / self.settings.topic_namespace

    @property
    def database(self) -> str:
        return self.settings.database_url.rpartition("/")[2]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "fundhub"), *args], env=self.environ, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"fundhub {' '.join(args)}: {done.stderr}")
        return done.stdout

    async def __aenter__(self) -> Scratch:
        # What the migrations and topic creation log is not the benchmark's output (--json).
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
        base = Settings()
        admin = await asyncpg.connect(base.database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        self.workdir.mkdir(parents=True, exist_ok=True)
        await migrations.migrate(self.settings.database_url)
        await ensure_topics(self.settings)
        self.bank_private_pem, public_pem = generate_rsa_keypair()
        (self.workdir / "bank.pem").write_text(public_pem)
        pem = str(self.workdir / "bank.pem")
        self.cli("bank-app", "add", "--app-id", APP_ID, "--public-key", pem)
        key = json.loads(
            self.cli("api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                     "--accounts", "*", "--json")
        )  # fmt: skip
        self.key_id, self.secret = key["keyId"], key["secret"]
        return self

    async def __aexit__(self, *_: object) -> None:
        base = Settings()
        admin = await asyncpg.connect(base.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await kafka.start()
        try:
            prefix = f"{self.settings.topic_namespace}."
            ours = [t for t in await kafka.list_topics() if t.startswith(prefix)]
            if ours:
                await kafka.delete_topics(ours)
        finally:
            await kafka.close()


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

    async def ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}")
                try:
                    if (await client.get(f"{self.url}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("gateway not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
