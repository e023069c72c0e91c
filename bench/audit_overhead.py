"""What the audit log costs the two hot routes: the gateway with audit off and on, in one run.

Starts the gateway itself (twice per round, alternating off/on so drift hits both alike) on a
scratch database and topic namespace of the running Kafka and PostgreSQL (`fundhub infra up`),
and drives each hot route at a fixed concurrency: `POST /callbacks/bank` (signed transfer
notifications) and `POST /v1/payouts` (signed payouts). Per mode and route it reports the rate,
p50/p99 latency and the gateway's CPU per request (from /proc: robust on a shared machine), and
the ratios on/off. Consumers are not started: the audit changes only what the gateway does (one
more acknowledged Kafka send per answer); the audit-writer runs on its own.

    .venv/bin/python bench/audit_overhead.py --count 3000 --concurrency 32 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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
from fundhub.common.config import Settings
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair
from fundhub.common.topics import topics

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection, post_bytes, signed_post_bytes  # noqa: E402
from notify_e2e import open_connections, pct, run_workers  # noqa: E402

APP_ID = "20990101000000000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "fundhub"), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"fundhub {' '.join(args)}: {done.stderr}")
    return done.stdout


async def measure(
    url: str, requests: list[bytes], concurrency: int, pid: int, ok: int
) -> dict[str, float]:
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures = 0
    connections = await open_connections(urlsplit(url), concurrency)

    async def worker(connection: LoadConnection) -> None:
        nonlocal failures
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            status, _ = await connection.send(request)
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
    }


def notifications(netloc: str, private_pem: str, run: str, count: int) -> list[bytes]:
    specs = [
        TransferSpec(record_id=f"ao{run}{i}", in_acct_no=f"77{i % 500:08d}", trans_amount=100)
        for i in range(count)
    ]
    return [
        post_bytes(netloc, "/callbacks/bank", json.dumps(p, ensure_ascii=False).encode())
        for p in build_many(specs, APP_ID, private_pem)
    ]


def payouts(netloc: str, key_id: str, secret: str, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        body = orjson.dumps(
            {
                "requestId": f"ao-{uuid.uuid4().hex}",
                "supplierId": f"SUP{i % 100:05d}",
                "payerAccountId": f"77{i % 500:08d}",
                "amount": 100,
                "currency": "CNY",
                "payee": {
                    "accountName": "Supplier",
                    "accountNo": f"62170{i:010d}",
                    "bankName": "ICBC",
                },
            }
        )
        out.append(signed_post_bytes(netloc, "/v1/payouts", body, key_id, secret))
    return out


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def start_gateway(env: dict[str, str], port: int, audit: bool) -> subprocess.Popen[bytes]:
    audit_env = {"FUNDHUB_GATEWAY_PORT": str(port), "FUNDHUB_AUDIT_ENABLED": str(audit).lower()}
    return subprocess.Popen([str(BIN / "fundhub-gateway")], env={**env, **audit_env})


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench/results/audit_overhead.json"))
    args = parser.parse_args()

    base = Settings()
    run = uuid.uuid4().hex[:8]
    database = f"fundhub_bench_audit_{run}"
    namespace = f"bench-audit-{run}"
    env = scratch_env(base, await create_scratch(base, database), namespace)
    env.update(FUNDHUB_ENV="test", FUNDHUB_MASTER_KEY=generate_master_key())
    results: dict[str, list[dict[str, float]]] = {}
    try:
        cli(env, "migrate")
        private_pem, public_pem = generate_rsa_keypair()
        pem = write(Path(f"/tmp/{namespace}.pem"), public_pem)
        cli(env, "bank-app", "add", "--app-id", APP_ID, "--public-key", str(pem))
        key = json.loads(
            cli(env, "api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                "--accounts", "*", "--json")
        )  # fmt: skip
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start_gateway(env, port, audit=mode == "on")
                try:
                    await wait_ready(url, proc)
                    netloc = f"127.0.0.1:{port}"
                    tag = f"{round_}{mode}"
                    await measure(url, notifications(netloc, private_pem, tag + "w", 300),
                                  args.concurrency, proc.pid, 200)  # fmt: skip
                    notify = await measure(
                        url,
                        notifications(netloc, private_pem, tag, args.count),
                        args.concurrency,
                        proc.pid,
                        200,
                    )
                    pay = await measure(
                        url,
                        payouts(netloc, key["keyId"], key["secret"], args.count),
                        args.concurrency,
                        proc.pid,
                        202,
                    )
                finally:
                    proc.terminate()
                    proc.wait(timeout=20)
                for route, figures in (("notify", notify), ("payouts", pay)):
                    results.setdefault(f"{route}_{mode}", []).append(figures)
                    print(f"round {round_} audit {mode:<3} {route:<8} {figures}", flush=True)
    finally:
        await drop_scratch(base, database, namespace)

    def best(name: str, metric: str) -> float:
        values = [r[metric] for r in results[name]]
        return max(values) if metric == "rate" else min(values)

    summary: dict[str, object] = {"count": args.count, "concurrency": args.concurrency}
    for route in ("notify", "payouts"):
        for metric in ("rate", "p50_ms", "p99_ms", "cpu_us_per_request"):
            off, on = best(f"{route}_off", metric), best(f"{route}_on", metric)
            summary[f"{route}_{metric}"] = {"off": off, "on": on, "ratio": round(on / off, 3)}
    summary["runs"] = results
    write(Path(args.out), json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    uvloop.run(main())
