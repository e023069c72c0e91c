"""How many slow or idle connections does it take to deny service? (issue 9, defect 5)

Starts its own gateway process (on a free port, against a database of its own on the running
Postgres and Kafka), then, for each level N: an attacker keeps N connections open that never
finish their headers (a slowloris: a header line every second; re-opened as soon as the gateway
closes one, as a persistent attacker would), spread over ``--sources`` loopback addresses
(127.0.1.x, distinct clients to the gateway); meanwhile a legitimate client makes signed balance
reads at ``--rate``/s, each on a new connection from 127.0.0.1 (a new client is what a full
server turns away). Per level: connections the attacker held (sampled), and the legitimate
reads' p50/p99 and failures (refused, closed, or no answer within 2 s).

``--mode before`` lifts every connection limit (what the gateway was: no header or body timeout,
no connection cap); ``--mode after`` runs with the defaults.

    .venv/bin/python bench/slow_clients.py --mode after  --levels 0,500,2000,6000
    .venv/bin/python bench/slow_clients.py --mode before --levels 0,500,2000,6000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from fundhub.access.keys import new_api_key
from fundhub.access.store import insert_api_key
from fundhub.common.config import Settings
from fundhub.common.migrations import migrate
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import sign_api_request

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
ACCOUNT = "6222000999000001"
PATH = f"/v1/accounts/{ACCOUNT}/balance"
LIFTED = {
    "FUNDHUB_GATEWAY_HEADER_TIMEOUT_S": "1000000",
    "FUNDHUB_GATEWAY_BODY_TIMEOUT_S": "1000000",
    "FUNDHUB_GATEWAY_MAX_CONNECTIONS": "1000000",
    "FUNDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "FUNDHUB_GATEWAY_LIMIT_CONCURRENCY": "1000000",
}


@dataclass
class Level:
    slow: int
    held_avg: float
    held_min: int
    reads: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Attacker:
    """Keeps ``target`` slowloris connections open, re-opening what the gateway closes. Runs
    in a process of its own (``AttackerProcess``), so that its thousands of connections do not
    slow the legitimate client's event loop and skew what is measured."""

    def __init__(self, port: int, sources: list[str], counter: Any) -> None:
        self.port = port
        self.sources = sources
        self._counter = counter
        self._open = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def open(self) -> int:
        return self._open

    @open.setter
    def open(self, value: int) -> None:
        self._open = value
        self._counter.value = value

    async def _one(self, index: int) -> None:
        source = self.sources[index % len(self.sources)]
        while True:
            writer = None
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(source, 0)
                )
                self.open += 1
                try:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    while True:
                        await asyncio.sleep(1.0)
                        writer.write(b"X-Slow: 1\r\n")
                        await writer.drain()
                        if writer.is_closing() or writer.transport.get_extra_info("socket") is None:
                            break
                finally:
                    self.open -= 1
            except (OSError, ConnectionError):
                pass
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(0.1)

    async def grow(self, target: int) -> None:
        while len(self._tasks) < target:
            batch = min(200, target - len(self._tasks))
            for _ in range(batch):
                self._tasks.append(asyncio.create_task(self._one(len(self._tasks))))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _attack(port: int, sources: list[str], target: int, counter: Any) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

    async def run() -> None:
        attacker = Attacker(port, sources, counter)
        await attacker.grow(target)
        await asyncio.Event().wait()

    asyncio.run(run())


class AttackerProcess:
    def __init__(self, port: int, sources: list[str], target: int) -> None:
        self._counter = multiprocessing.Value("i", 0)
        self._process = multiprocessing.Process(
            target=_attack, args=(port, sources, target, self._counter), daemon=True
        )
        if target:
            self._process.start()

    @property
    def open(self) -> int:
        return int(self._counter.value)

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)


async def legit_read(port: int, key_id: str, secret: str) -> float | None:
    """One signed balance read on a new connection: its latency, or None if it failed."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    signature = sign_api_request(secret, "GET", PATH, [], timestamp, nonce, b"")
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"X-Api-Key: {key_id}\r\nX-Timestamp: {timestamp}\r\nX-Nonce: {nonce}\r\n"
        f"X-Signature: {signature}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(2.0):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status_line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError, ConnectionError):
        return None
    # The account has no balance yet: 404 is the read's whole answer, as 200 would be.
    if not status_line.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")):
        return None
    return (time.perf_counter() - started) * 1000


async def measure(
    port: int,
    attacker: AttackerProcess,
    key: tuple[str, str],
    slow: int,
    seconds: float,
    rate: float,
) -> Level:
    await asyncio.sleep(
        3.0 + slow / 2000
    )  # let the attacker reach its level (and the gateway its limits)
    held: list[int] = []
    results: list[asyncio.Task[float | None]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        results.append(asyncio.create_task(legit_read(port, *key)))
        held.append(attacker.open)
        await asyncio.sleep(1.0 / rate)
    latencies = await asyncio.gather(*results)
    ok = sorted(x for x in latencies if x is not None)
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else None
    return Level(
        slow=slow,
        held_avg=round(statistics.fmean(held), 1) if held else 0.0,
        held_min=min(held) if held else 0,
        reads=len(latencies),
        failed=len(latencies) - len(ok),
        p50_ms=round(statistics.median(ok), 1) if ok else None,
        p99_ms=round(p99, 1) if p99 is not None else None,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("before", "after"), default="after")
    parser.add_argument("--levels", default="0,500,2000,6000")
    parser.add_argument("--sources", type=int, default=16, help="attacker addresses")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument(
        "--gateway-fd-limit", type=int, default=0, help="the gateway's RLIMIT_NOFILE (0: ours)"
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gateway_fds = args.gateway_fd_limit or soft

    base = Settings()
    name = f"fundhub_bench_slow_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = base.database_url.rpartition("/")[0] + "/" + name
    gateway: asyncio.subprocess.Process | None = None
    try:
        await migrate(dsn)
        master = generate_master_key()
        key = new_api_key("bench", "balance:read", "*")
        conn = await asyncpg.connect(dsn)
        await insert_api_key(conn, key, master)
        await conn.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
        env.update(
            FUNDHUB_ENV="test",
            FUNDHUB_DATABASE_URL=dsn,
            FUNDHUB_MASTER_KEY=master,
            FUNDHUB_GATEWAY_PORT=str(port),
            FUNDHUB_GATEWAY_OPS_PORT=str(free_port()),
            FUNDHUB_TOPIC_NAMESPACE=f"bench-slow-{name[-8:]}",
            FUNDHUB_LOG_LEVEL="WARNING",
            **(LIFTED if args.mode == "before" else {}),
        )
        gateway = await asyncio.create_subprocess_exec(
            str(BIN / "fundhub-gateway"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (gateway_fds, hard)),
        )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        sources = [f"127.0.1.{i + 1}" for i in range(args.sources)]
        levels: list[Level] = []
        print(f"mode={args.mode} gateway fd limit={gateway_fds} sources={args.sources}")
        print(f"{'slow':>6} {'held':>8} {'reads':>6} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8}")
        for slow in (int(x) for x in args.levels.split(",")):
            attacker = AttackerProcess(port, sources, slow)
            try:
                level = await measure(
                    port, attacker, (key.key_id, key.secret), slow, args.seconds, args.rate
                )
            finally:
                attacker.stop()
            levels.append(level)
            print(
                f"{level.slow:>6} {level.held_avg:>8} {level.reads:>6} {level.failed:>6} "
                f"{level.p50_ms!s:>8} {level.p99_ms!s:>8}",
                flush=True,
            )
            await asyncio.sleep(1.0)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (out / f"slow_clients-{args.mode}-{stamp}.json").write_text(
            json.dumps({"mode": args.mode, "args": vars(args), "fd_limit": gateway_fds,
                        "levels": [asdict(x) for x in levels]}, indent=2)
        )  # fmt: skip
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                await asyncio.wait_for(gateway.wait(), 15)
            except TimeoutError:
                gateway.kill()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
