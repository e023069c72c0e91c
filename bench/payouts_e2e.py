"""Supplier payouts end to end: signed POST /v1/payouts -> 202 -> payment-worker -> bank -> final.

Runs against a running stack (`make up`: gateway, notify-ingest, payment-worker, the bank
simulator). It funds payer accounts with signed transfer notifications, creates an API key with
the operator CLI, then submits N payouts with C in flight and measures:
  submit latency   POST -> 202 (the payout is durable and queued)
  time to final    202 -> a final state committed (SUCCESS / FAILED), seen by polling Postgres
  rate             N / (first POST -> last final state)
and the ratio of that rate to the raw baseline of bench/notify_e2e.py (aiokafka + asyncpg).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import uvloop

from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.common.config import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection, signed_post_bytes  # noqa: E402
from notify_e2e import (  # noqa: E402
    machine,
    open_connections,
    pct,
    phase_baseline,
    poll_unseen,
    run_workers,
    stack_arguments,
)


@dataclass
class Run:
    accepted: dict[str, float] = field(default_factory=dict)  # payId -> 202 time
    submit_ms: list[float] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    unseen: set[str] = field(default_factory=set)
    refused: int = 0


def api_key(accounts: str) -> tuple[str, str]:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/fundhub"), "api-key", "create", "--name", "bench",
         "--scopes", "payouts:write,payouts:read", "--accounts", accounts, "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return data["keyId"], data["secret"]


async def fund(gateway: str, app_id: str, key: str, accounts: list[str], run: str) -> None:
    specs = [
        TransferSpec(record_id=f"pf{run}{i}", in_acct_no=a, trans_amount=10**12)
        for i, a in enumerate(accounts)
    ]
    async with aiohttp.ClientSession() as session:
        for params in build_many(specs, app_id, key):
            async with session.post(f"{gateway}/callbacks/bank", json=params) as r:
                assert await r.text() == "success"


async def wait_funded(pool: asyncpg.Pool, accounts: list[str]) -> None:
    while True:
        n = await pool.fetchval(
            "SELECT count(*) FROM account_balances WHERE account_id = ANY($1) AND available > 0",
            accounts,
        )
        if n == len(accounts):
            return
        await asyncio.sleep(0.1)


def signed_payout(netloc: str, key_id: str, secret: str, payer: str, i: int) -> bytes:
    """The i-th payout of a run as a whole HTTP request, signed now (the nonce is fresh and the
    timestamp must be within the gateway's tolerance when it arrives)."""
    path = "/v1/payouts"
    body = orjson.dumps(
        {
            "requestId": f"bench-{uuid.uuid4().hex}",
            "supplierId": f"SUP{i % 100:05d}",
            "payerAccountId": payer,
            "amount": 100 + i % 900,
            "currency": "CNY",
            "payee": {"accountName": "Supplier", "accountNo": f"62170{i:010d}", "bankName": "ICBC"},
        }
    )
    return signed_post_bytes(netloc, path, body, key_id, secret)


async def submit_all(
    args: argparse.Namespace, key_id: str, secret: str, accounts: list[str], run: Run
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.count):
        queue.put_nowait(i)
    url = urlsplit(args.gateway_url)

    async def worker(connection: LoadConnection) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            request = signed_payout(url.netloc, key_id, secret, accounts[i % len(accounts)], i)
            started = time.perf_counter()
            status, raw = await connection.send(request)
            now = time.perf_counter()
            if status == 202:
                pay_id = orjson.loads(raw)["payId"]
                run.submit_ms.append((now - started) * 1000)
                run.accepted[pay_id] = now
                run.unseen.add(pay_id)
            else:
                run.refused += 1

    await run_workers(await open_connections(url, args.concurrency), worker)


async def watch_final(pool: asyncpg.Pool, run: Run, expected: int, deadline: float) -> None:
    """Poll Postgres for final states every 50 ms, on one held connection: the client shares the
    machine, and each poll looks up to 2,000 payouts up; the time to final reads up to 50 ms
    late, never early."""
    async with pool.acquire() as conn:
        while (len(run.final) < expected - run.refused) and time.perf_counter() < deadline:
            rows, now = await poll_unseen(
                conn,
                "SELECT pay_id, state FROM payouts "
                "WHERE pay_id = ANY($1) AND state <> 'PROCESSING'",
                run.unseen,
                "pay_id",
            )
            for row in rows:
                run.final[row["pay_id"]] = now
                run.states[row["state"]] = run.states.get(row["state"], 0) + 1
            await asyncio.sleep(0.05)


async def main() -> None:
    settings = Settings()
    parser = stack_arguments(__doc__, settings)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/payouts_e2e.json"))
    args = parser.parse_args()
    key = Path(args.private_key_file).read_text()  # noqa: ASYNC240 (before the clock starts)
    run_id = uuid.uuid4().hex[:6]
    accounts = [f"77{run_id}{i:04d}"[:20] for i in range(args.accounts)]
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    assert pool is not None
    await fund(args.gateway_url, args.app_id, key, accounts, run_id)
    await wait_funded(pool, accounts)
    key_id, secret = api_key(",".join(accounts))

    run = Run()
    started = time.perf_counter()
    watcher = asyncio.ensure_future(watch_final(pool, run, args.count, started + args.timeout))
    await submit_all(args, key_id, secret, accounts, run)
    submitted = time.perf_counter()
    await watcher
    done = max(run.final.values()) if run.final else time.perf_counter()
    to_final = [(run.final[p] - run.accepted[p]) * 1000 for p in run.final]
    results: dict[str, object] = {
        "machine": machine(),
        "payouts": args.count,
        "refused": run.refused,
        "final": len(run.final),
        "still_processing": args.count - run.refused - len(run.final),
        "states": run.states,
        "submit_rate_per_s": round(args.count / (submitted - started), 1),
        "end_to_end_rate_per_s": round(len(run.final) / (done - started), 1),
        "submit_p50_ms": round(statistics.median(run.submit_ms), 1),
        "submit_p99_ms": round(pct(run.submit_ms, 0.99), 1),
        "to_final_p50_ms": round(statistics.median(to_final), 1) if to_final else None,
        "to_final_p99_ms": round(pct(to_final, 0.99), 1) if to_final else None,
    }
    if not args.no_baseline:
        base_args = argparse.Namespace(
            count=args.count, app_id=args.app_id, database_url=args.database_url
        )
        baseline = await phase_baseline(base_args, settings, key, run_id)
        results["baseline_rate_per_s"] = baseline["rate_per_s"]
        results["ratio_to_baseline"] = round(
            float(results["end_to_end_rate_per_s"]) / baseline["rate_per_s"],
            3,  # type: ignore[arg-type]
        )
    await pool.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # noqa: ASYNC240
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    uvloop.run(main())  # the client shares the box: spend as little of it as possible
