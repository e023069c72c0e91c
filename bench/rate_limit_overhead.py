"""What rate limiting costs on the two hot routes: the same load with the limits on and off, in
the same run.

Starts two gateway processes of its own on free ports (FUNDHUB_RATE_LIMITS_ENABLED true and
false; the limits set high enough never to refuse, so both do the same work plus the check)
against the running Kafka and PostgreSQL, in a database and topic namespace of its own, dropped
after. Then, for R rounds, alternating which goes first: N signed `POST /callbacks/bank` and N
signed `POST /v1/payouts` (202 = committed in Postgres) at C in flight to each gateway. Per
round and route it records the rate (answers/s) and the gateway's own CPU per request (from
/proc); the figures are the medians over the rounds and the on/off ratios. Only the gateway
runs: nothing consumes what it publishes or writes, and the payouts are never sent to a bank.

    .venv/bin/python bench/rate_limit_overhead.py --count 3000 --concurrency 64 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import uvloop
from aiokafka.admin import AIOKafkaAdminClient

from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.common import migrations
from fundhub.common.config import Settings
from fundhub.common.kafka import ensure_topics
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair, sign_api_request

sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection, post_bytes

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
APP_ID = "20210911999999999999999999"
NEVER = "100000000/second"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gateway:
    def __init__(self, environ: dict[str, str], enabled: bool, log: Path) -> None:
        self.port = free_port()
        self.name = "on" if enabled else "off"
        env = {
            **environ,
            "FUNDHUB_GATEWAY_PORT": str(self.port),
            "FUNDHUB_RATE_LIMITS_ENABLED": str(enabled).lower(),
            "FUNDHUB_RATE_LIMIT_WRITE": NEVER,
            "FUNDHUB_RATE_LIMIT_READ": NEVER,
            "FUNDHUB_RATE_LIMIT_BANK_CALLBACK": NEVER,
            "FUNDHUB_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [str(BIN / "fundhub-gateway")],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway {self.name} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)


async def drive(url: str, requests: list[bytes], concurrency: int, ok: int) -> tuple[float, int]:
    """Send every request over ``concurrency`` keep-alive connections: (seconds, failures)."""
    parts = urlsplit(url)
    connections = [
        await LoadConnection.open(parts.hostname or "127.0.0.1", parts.port or 80)
        for _ in range(concurrency)
    ]
    queue = list(reversed(requests))
    failures = 0

    async def worker(connection: LoadConnection) -> None:
        nonlocal failures
        while queue:
            status, _ = await connection.send(queue.pop())
            failures += status != ok

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return time.perf_counter() - started, failures


def payout_requests(netloc: str, key_id: str, secret: str, count: int) -> list[bytes]:
    path, out = "/v1/payouts", []
    for i in range(count):
        body = orjson.dumps(
            {
                "requestId": f"rl-{uuid.uuid4().hex}",
                "supplierId": f"SUP{i % 100:05d}",
                "payerAccountId": f"77{i % 50:08d}",
                "amount": 100 + i % 900,
                "currency": "CNY",
                "payee": {
                    "accountName": "Supplier",
                    "accountNo": f"62170{i:010d}",
                    "bankName": "B",
                },
            }
        )
        ts, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = sign_api_request(secret, "POST", path, [], ts, nonce, body)
        headers = {
            "X-Api-Key": key_id,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": signature,
        }
        out.append(post_bytes(netloc, path, body, headers))
    return out


def cli(environ: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "fundhub"), *args], env=environ, capture_output=True, text=True, check=True
    )
    return done.stdout


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000, help="requests per route per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench/results/rate_limit_overhead.json"))
    args = parser.parse_args()

    base = Settings()
    run = uuid.uuid4().hex[:8]
    db_name = f"fundhub_bench_rl_{run}"
    head = base.database_url.rpartition("/")[0]
    settings = base.model_copy(
        update={
            "database_url": f"{head}/{db_name}",
            "topic_namespace": f"bench-rl-{run}",
            "master_key": generate_master_key(),
        }
    )
    admin = await asyncpg.connect(base.database_url)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    tmp = ROOT / "bench/results" / f"rl-{run}"
    tmp.mkdir(parents=True, exist_ok=True)
    gateways: list[Gateway] = []
    try:
        await migrations.migrate(settings.database_url)
        await ensure_topics(settings)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
        environ.update(
            FUNDHUB_ENV="test",
            FUNDHUB_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            FUNDHUB_DATABASE_URL=settings.database_url,
            FUNDHUB_TOPIC_NAMESPACE=settings.topic_namespace,
            FUNDHUB_MASTER_KEY=settings.master_key or "",
        )
        private_pem, public_pem = generate_rsa_keypair()
        (tmp / "bank.pem").write_text(public_pem)
        cli(environ, "bank-app", "add", "--app-id", APP_ID, "--public-key", str(tmp / "bank.pem"))
        key = json.loads(
            cli(environ, "api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                "--accounts", "*", "--json")
        )  # fmt: skip
        gateways = [
            Gateway(environ, enabled, tmp / f"gateway-{enabled}.log") for enabled in (False, True)
        ]
        await asyncio.gather(*(g.ready() for g in gateways))

        specs = [
            TransferSpec(
                record_id=f"rl{run}{i}", in_acct_no=f"88{i % 500:08d}", trans_amount=100 + i
            )
            for i in range(args.count)
        ]
        notices = [json.dumps(p).encode() for p in build_many(specs, APP_ID, private_pem)]
        results: dict[str, dict[str, list[dict[str, float]]]] = {
            g.name: {"bank": [], "payouts": []} for g in gateways
        }
        # Warm-up: each gateway's first requests (imports, pools, JIT-less but cache-cold).
        for g in gateways:
            netloc = urlsplit(g.url).netloc
            await drive(
                g.url,
                [post_bytes(netloc, "/callbacks/bank", n) for n in notices[:500]],
                args.concurrency,
                200,
            )
            await drive(
                g.url,
                payout_requests(netloc, key["keyId"], key["secret"], 500),
                args.concurrency,
                202,
            )
        for round_no in range(args.rounds):
            order = gateways if round_no % 2 == 0 else list(reversed(gateways))
            for g in order:
                netloc = urlsplit(g.url).netloc
                loads = {
                    "bank": ([post_bytes(netloc, "/callbacks/bank", n) for n in notices], 200),
                    "payouts": (
                        payout_requests(netloc, key["keyId"], key["secret"], args.count),
                        202,
                    ),
                }
                for route, (requests, ok) in loads.items():
                    cpu0 = cpu_seconds(g.proc.pid)
                    seconds, failures = await drive(g.url, requests, args.concurrency, ok)
                    cpu = cpu_seconds(g.proc.pid) - cpu0
                    figure = {
                        "rate": len(requests) / seconds,
                        "cpu_ms": cpu * 1000 / len(requests),
                        "failures": failures,
                    }
                    results[g.name][route].append(figure)
                    print(
                        f"round {round_no + 1} {g.name:>3} {route:<8} {figure['rate']:8.0f}/s "
                        f"{figure['cpu_ms']:.3f} ms CPU/request, {failures} failures",
                        flush=True,
                    )

        summary: dict[str, dict[str, float]] = {}
        for route in ("bank", "payouts"):
            med = {
                name: {
                    m: statistics.median(r[m] for r in results[name][route])
                    for m in ("rate", "cpu_ms")
                }
                for name in results
            }
            summary[route] = {
                "rate_off": med["off"]["rate"],
                "rate_on": med["on"]["rate"],
                "cpu_ms_off": med["off"]["cpu_ms"],
                "cpu_ms_on": med["on"]["cpu_ms"],
                "rate_ratio_on_off": med["on"]["rate"] / med["off"]["rate"],
                "cpu_ratio_on_off": med["on"]["cpu_ms"] / med["off"]["cpu_ms"],
            }
        print(json.dumps(summary, indent=2))
        report = {"args": vars(args), "rounds": results, "summary": summary}
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(report, indent=2))
    finally:
        for g in gateways:
            g.stop()
        await asyncio.sleep(0.5)
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await kafka.start()
        try:
            names = set(await kafka.list_topics())
            ours = [t for t in names if t.startswith(f"{settings.topic_namespace}.")]
            if ours:
                await kafka.delete_topics(ours)
        finally:
            await kafka.close()


if __name__ == "__main__":
    uvloop.run(main())
