"""Consumer throughput with one and with two replicas of each consumer service, in one run.

What a second replica of a consumer service buys on this machine. Each round fills a backlog
with the consumers stopped, then starts K replicas at once and measures how fast they work it
off, from the moment all K answer ``/readyz`` to the last row committed (what the replicas
did before that moment, while the others started, is not counted):

  notify-ingest   N signed transfer notifications accepted by the gateway (in Kafka), then K
                  notify-ingest replicas apply them to the ledger (bank_transfer_records rows)
  payment-worker  P payouts accepted by the gateway (their commands in Kafka), then K
                  payment-worker replicas freeze, send them to the bank simulator in batches,
                  and settle them from its results (payouts in a final state)

Rounds alternate K = 1, 2, 1, 2... on a scratch database and topic namespace of the running
Kafka and PostgreSQL (``scratch_gateway.Scratch``; no ``make up``), so other people's load on a
shared machine falls on both alike; the summary is each K's median and the ratio 2 / 1, with
the replicas' CPU per item (/proc), the scratch database's backends' CPU per item and items per
commit, and the load average. ``--partitions 1`` makes every topic one partition: what one
partition carries (and a second replica then has nothing to do).

    .venv/bin/python bench/replicas.py                         # 2 rounds each, 8,000 + 3,000
    .venv/bin/python bench/replicas.py --rounds 1 --notifications 3000 --payouts 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from load_client import post_bytes
from notify_e2e import machine, prepare
from payouts_e2e import signed_payout
from scratch_gateway import (
    APP_ID,
    BIN,
    GatewayProcess,
    Scratch,
    cpu_seconds,
    free_port,
    load_average,
    measure,
    wait_ready,
    write,
)

PAYERS = [f"6229{i:012d}" for i in range(50)]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Replicas:
    """K processes of one service (``command``), each on its own port, logs in ``logs``."""

    def __init__(
        self, command: str, port_variable: str, k: int, environ: dict[str, str], logs: Path
    ) -> None:
        self.ports = [free_port() for _ in range(k)]
        self.procs = [
            subprocess.Popen(
                [str(BIN / command)],
                env={**environ, port_variable: str(port)},
                stdout=(logs / f"{command}-{port}.log").open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for port in self.ports
        ]

    async def ready(self, need: int, timeout_s: float = 120) -> None:
        """Until ``need`` of them answer ``/readyz``: a consumer replica is ready once it has
        joined its group, holding partitions or, beyond their number, none (a standby)."""
        deadline = time.perf_counter() + timeout_s
        async with httpx.AsyncClient() as client:
            while True:
                ready = 0
                for port, proc in zip(self.ports, self.procs, strict=True):
                    if proc.poll() is not None:
                        raise RuntimeError(f"a replica exited ({proc.returncode})")
                    try:
                        answer = await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                        ready += answer.status_code == 200
                    except httpx.HTTPError:
                        pass
                if ready >= need:
                    return
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{ready} of {len(self.procs)} replicas ready")
                await asyncio.sleep(0.2)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class Primary:
    """What the scratch database costs its Postgres: the CPU of its backends (/proc; not the
    WAL writer's or the checkpointer's, shared with everyone) and its commits (every
    transaction: the services' probes and relays' reads count, the bench's own polls not)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.cpu0: dict[int, float] = {}
        self.commits0 = 0

    async def _sample(self) -> tuple[dict[int, float], int]:
        rows = await self.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        commits: int = await self.pool.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return {r["pid"]: cpu_seconds(r["pid"]) for r in rows}, commits

    async def start(self) -> None:
        self.cpu0, self.commits0 = await self._sample()

    async def since(self) -> tuple[float, int]:
        cpu, commits = await self._sample()
        return sum(c - self.cpu0.get(pid, 0.0) for pid, c in cpu.items()), commits - self.commits0


async def drain(
    replicas: Replicas,
    count: Callable[[], Any],
    total: int,
    primary: Primary,
    partitions: int,
    timeout_s: float = 600,
) -> dict[str, float]:
    """Start to finish of one backlog: the rate from all replicas ready (each has joined the
    group; the last join completes the rebalance that shares the partitions) to the last row.
    A backlog the first replica works off while the others start is too small to say anything
    of K replicas: it is flagged."""
    started = time.perf_counter()
    await replicas.ready(len(replicas.procs))
    ready_at, done_at_ready = time.perf_counter(), await count()
    cpu0 = replicas.cpu()
    await primary.start()
    polls = 0
    while (done := await count()) < total:
        polls += 1
        if time.perf_counter() - ready_at > timeout_s:
            raise RuntimeError(f"only {done} of {total} done after {timeout_s:.0f}s")
        await asyncio.sleep(0.05)
    finished = time.perf_counter()
    pg_cpu, commits = await primary.since()
    commits -= polls + 2  # the bench's own reads are transactions too
    worked = max(total - done_at_ready, 1)
    if worked < total / 2:
        print(
            f"warning: {total - worked} of {total} were done before all {len(replicas.procs)} "
            "replicas were ready; a larger backlog measures them together",
            file=sys.stderr,
        )
    return {
        "rate": round(worked / (finished - ready_at), 1),
        "counted": worked,
        "start_s": round(ready_at - started, 1),
        "cpu_ms_per_item": round((replicas.cpu() - cpu0) / worked * 1000, 2),
        "pg_cpu_ms_per_item": round(pg_cpu / worked * 1000, 3),
        "items_per_commit": round(worked / max(commits, 1), 1),
        "load": round(load_average(), 1),
    }


async def notify_round(
    scratch: Scratch,
    gateway: GatewayProcess,
    pool: asyncpg.Pool,
    k: int,
    n: int,
    logs: Path,
    partitions: int,
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    items = prepare(tag, "r", n, APP_ID, scratch.bank_private_pem)
    requests = [post_bytes(gateway.netloc, "/callbacks/bank", body) for _, body in items]
    accepted = await measure(gateway.url, requests, 32, gateway.pid, ok=200)
    assert accepted["failures"] == 0, accepted
    prefix = f"b{tag}r%"

    async def applied() -> int:
        value: int = await pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE $1", prefix
        )
        return value

    replicas = Replicas(
        "fundhub-notify-ingest", "FUNDHUB_NOTIFY_INGEST_PORT", k, scratch.environ, logs
    )
    try:
        return await drain(replicas, applied, n, Primary(pool), partitions)
    finally:
        replicas.stop()


async def payout_round(
    scratch: Scratch,
    gateway: GatewayProcess,
    pool: asyncpg.Pool,
    worker_env: dict[str, str],
    k: int,
    n: int,
    logs: Path,
    partitions: int,
) -> dict[str, float]:
    since = await pool.fetchval("SELECT now()")
    requests = [
        signed_payout(gateway.netloc, scratch.key_id, scratch.secret, PAYERS[i % len(PAYERS)], i)
        for i in range(n)
    ]
    accepted = await measure(gateway.url, requests, 32, gateway.pid, ok=202)
    assert accepted["failures"] == 0, accepted

    async def final() -> int:
        value: int = await pool.fetchval(
            "SELECT count(*) FROM payouts WHERE created_at >= $1 "
            "AND state IN ('SUCCESS', 'FAILED', 'RETURNED')",
            since,
        )
        return value

    replicas = Replicas(
        "fundhub-payment-worker", "FUNDHUB_PAYMENT_WORKER_PORT", k, worker_env, logs
    )
    try:
        return await drain(replicas, final, n, Primary(pool), partitions)
    finally:
        replicas.stop()


async def fund_payers(scratch: Scratch, gateway: GatewayProcess, pool: asyncpg.Pool) -> None:
    """Every payer gets enough for all the rounds' payouts (notify-ingest applies it)."""
    from fundhub.bank_simulator.notifications import TransferSpec, build_many

    specs = [
        TransferSpec(record_id=f"fund{uuid.uuid4().hex[:16]}", in_acct_no=p, trans_amount=10**10)
        for p in PAYERS
    ]
    signed = build_many(specs, APP_ID, scratch.bank_private_pem)
    bodies = [json.dumps(s).encode() for s in signed]
    await measure(
        gateway.url, [post_bytes(gateway.netloc, "/callbacks/bank", b) for b in bodies], 8,
        gateway.pid, ok=200,
    )  # fmt: skip
    logs = scratch.workdir
    replicas = Replicas(
        "fundhub-notify-ingest", "FUNDHUB_NOTIFY_INGEST_PORT", 1, scratch.environ, logs
    )
    try:
        await replicas.ready(1)
        deadline = time.perf_counter() + 120
        while await pool.fetchval(
            "SELECT count(*) FROM account_balances WHERE account_id = ANY($1::text[])", PAYERS
        ) < len(PAYERS):
            if time.perf_counter() > deadline:
                raise RuntimeError("the payers were not funded in 120 s")
            await asyncio.sleep(0.1)
    finally:
        replicas.stop()


def start_simulator(
    port: int, gateway_url: str, key_file: Path, environ: dict[str, str], logs: Path
) -> subprocess.Popen[bytes]:
    """The bank simulator with its defaults: every payout succeeds, results in 20-200 ms."""
    return subprocess.Popen(
        [str(BIN / "fundhub-bank-simulator"), "--port", str(port), "--gateway-url",
         gateway_url, "--app-id", APP_ID, "--private-key-file", str(key_file)],
        env=environ, stdout=(logs / "bank-simulator.log").open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def summarise(runs: dict[str, dict[int, list[dict[str, float]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for service, by_k in runs.items():
        medians = {
            k: {
                m: statistics.median(r[m] for r in rounds)
                for m in (
                    "rate",
                    "cpu_ms_per_item",
                    "pg_cpu_ms_per_item",
                    "items_per_commit",
                    "load",
                )
            }
            for k, rounds in by_k.items()
        }
        summary[service] = {
            "per_replicas": medians,
            "ratio_2_to_1": round(medians[2]["rate"] / medians[1]["rate"], 2),
        }
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each K")
    parser.add_argument("--notifications", type=int, default=8000, help="backlog a round")
    parser.add_argument("--payouts", type=int, default=3000, help="backlog a round")
    parser.add_argument(
        "--partitions", type=int, default=6, help="of each topic (1: what one partition carries)"
    )
    parser.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    args = parser.parse_args()
    runs: dict[str, dict[int, list[dict[str, float]]]] = {
        "notify-ingest": {1: [], 2: []},
        "payment-worker": {1: [], 2: []},
    }
    scratch = Scratch("replicas")
    scratch.base = scratch.base.model_copy(update={"topic_partitions": args.partitions})
    async with scratch:
        logs = scratch.workdir
        # Before any process starts: a failure here leaves none behind.
        pool = await asyncpg.create_pool(
            scratch.environ["FUNDHUB_DATABASE_URL"], min_size=1, max_size=2
        )
        gateway = GatewayProcess(
            scratch, {"FUNDHUB_RATE_LIMITS_ENABLED": "false"}, logs / "gateway.log"
        )
        sim_port = free_port()
        key_file = write(logs / "bank-private.pem", scratch.bank_private_pem)
        sim = start_simulator(sim_port, gateway.url, key_file, scratch.environ, logs)
        worker_env = {
            **scratch.environ,
            "FUNDHUB_BANK_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "FUNDHUB_PAYOUT_NOTIFY_URL": f"{gateway.url}/callbacks/bank",
        }
        try:
            await gateway.ready()
            await wait_ready(f"http://127.0.0.1:{sim_port}", sim)
            await fund_payers(scratch, gateway, pool)
            for r in range(args.rounds):
                for k in (1, 2) if r % 2 == 0 else (2, 1):
                    result = await notify_round(
                        scratch, gateway, pool, k, args.notifications, logs, args.partitions
                    )
                    runs["notify-ingest"][k].append(result)
                    say(f"round {r + 1} notify-ingest x{k}: {result}")
                    result = await payout_round(
                        scratch, gateway, pool, worker_env, k, args.payouts, logs, args.partitions
                    )
                    runs["payment-worker"][k].append(result)
                    say(f"round {r + 1} payment-worker x{k}: {result}")
        finally:
            await pool.close()
            gateway.stop()
            if sim.poll() is None:
                os.killpg(sim.pid, signal.SIGTERM)
                sim.wait(30)
    summary = {
        "machine": machine(),
        "partitions": args.partitions,
        "runs": runs,
        "summary": summarise(runs),
    }
    out = Path(__file__).parent / "results" / f"replicas-{int(time.time())}.json"
    write(out, json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for service, figures in summary["summary"].items():
            print(service, json.dumps(figures))


if __name__ == "__main__":
    uvloop.run(main())
