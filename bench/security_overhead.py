"""What the audit log and the rate limits cost the two hot routes, in one run.

Four gateway configurations, each a fresh `fundhub-gateway` process on a scratch database and
topic namespace of the running Kafka and PostgreSQL (`scratch_gateway.py`; no `make up`):

  neither      FUNDHUB_AUDIT_ENABLED=false  FUNDHUB_RATE_LIMITS_ENABLED=false
  rate_limits  false                        true
  audit        true                         false
  both         true                         true

R rounds; in each, every configuration in turn (the order rotates from round to round, so
drift and other people's load hit all four alike): start its gateway, warm it up, then N
signed `POST /callbacks/bank` (transfer notifications, answered `success` once Kafka acked)
and N signed `POST /v1/payouts` (202 once committed in Postgres) at C in flight, routes in
alternating order; stop it. Per configuration and route: the rate, p50/p99 latency and the
gateway's CPU per request (/proc: the figure that holds up on a shared machine). The summary
is the medians over the rounds and each configuration's ratio to `neither`.

Rate limits run with the defaults of `fundhub.common.config` (leases of 50 for the bank's
5000/second per address, of 10 for 1000/second per key); payouts go round-robin over
``--keys`` API keys so that no key nears its limit whatever rate the box reaches.

    .venv/bin/python bench/security_overhead.py                  # 5 rounds x 3,000 per route
    .venv/bin/python bench/security_overhead.py --quick --json   # a smoke run, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection, post_bytes
from notify_e2e import machine, open_connections, pct, prepare, run_workers
from payouts_e2e import signed_payout
from scratch_gateway import (
    APP_ID,
    ROOT,
    GatewayProcess,
    Scratch,
    cpu_seconds,
    load_average,
)

CONFIGS: dict[str, dict[str, str]] = {
    "neither": {"FUNDHUB_AUDIT_ENABLED": "false", "FUNDHUB_RATE_LIMITS_ENABLED": "false"},
    "rate_limits": {"FUNDHUB_AUDIT_ENABLED": "false", "FUNDHUB_RATE_LIMITS_ENABLED": "true"},
    "audit": {"FUNDHUB_AUDIT_ENABLED": "true", "FUNDHUB_RATE_LIMITS_ENABLED": "false"},
    "both": {"FUNDHUB_AUDIT_ENABLED": "true", "FUNDHUB_RATE_LIMITS_ENABLED": "true"},
}
ROUTES = ("bank", "payouts")
OK = {"bank": 200, "payouts": 202}
METRICS = ("rate", "cpu_us", "p50_ms", "p99_ms")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def drive(
    gateway: GatewayProcess, requests: list[bytes], concurrency: int, ok: int
) -> dict[str, float]:
    """Every request over ``concurrency`` keep-alive connections: rate, latencies and the
    gateway's CPU per request while they ran."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures = 0

    async def worker(connection: LoadConnection) -> None:
        nonlocal failures
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            status, _ = await connection.send(request)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += status != ok

    connections = await open_connections(urlsplit(gateway.url), concurrency)
    cpu0, t0 = cpu_seconds(gateway.pid), time.perf_counter()
    await run_workers(connections, worker)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(gateway.pid) - cpu0
    return {
        "rate": len(requests) / elapsed,
        "cpu_us": cpu / len(requests) * 1e6,
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "failures": failures,
        "load": load_average(),
    }


class Loads:
    """Signed requests for one round: the bank's notifications are signed once per round (RSA,
    about 1 ms each) and sent to every configuration's gateway alike; payouts are signed just
    before they are sent (a fresh nonce each, HMAC)."""

    def __init__(self, scratch: Scratch, keys: list[tuple[str, str]], count: int, warmup: int):
        self.scratch, self.keys, self.count, self.warmup = scratch, keys, count, warmup
        self.notices: list[bytes] = []
        self._payouts = 0

    def sign_round(self, tag: str) -> None:
        signed = prepare(tag, "s", self.warmup + self.count, APP_ID, self.scratch.bank_private_pem)
        self.notices = [body for _, body in signed]

    def bank(self, gateway: GatewayProcess, warm: bool) -> list[bytes]:
        bodies = self.notices[: self.warmup] if warm else self.notices[self.warmup :]
        return [post_bytes(gateway.netloc, "/callbacks/bank", body) for body in bodies]

    def payouts(self, gateway: GatewayProcess, warm: bool) -> list[bytes]:
        out = []
        for _ in range(self.warmup if warm else self.count):
            i = self._payouts = self._payouts + 1
            key_id, secret = self.keys[i % len(self.keys)]
            out.append(signed_payout(gateway.netloc, key_id, secret, f"77{i % 500:08d}", i))
        return out


async def one_config(
    scratch: Scratch, loads: Loads, name: str, round_no: int, concurrency: int
) -> dict[str, dict[str, float]]:
    gateway = GatewayProcess(scratch, CONFIGS[name], scratch.workdir / f"gateway-{name}.log")
    try:
        await gateway.ready()
        for route in ROUTES:  # warm-up: pools, caches, leases; not measured
            build = loads.bank if route == "bank" else loads.payouts
            await drive(gateway, build(gateway, warm=True), concurrency, OK[route])
        figures = {}
        for route in ROUTES if round_no % 2 == 0 else tuple(reversed(ROUTES)):
            build = loads.bank if route == "bank" else loads.payouts
            requests = build(gateway, warm=False)
            figures[route] = await drive(gateway, requests, concurrency, OK[route])
        return figures
    finally:
        gateway.stop()


def summarise(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """Medians per configuration and route, and their ratios to ``neither``; also the median
    of the per-round ratios (each round's configurations ran minutes apart, under alike load)."""
    summary: dict[str, Any] = {}
    for route in ROUTES:
        base = {m: statistics.median(r[m] for r in runs["neither"][route]) for m in METRICS}
        per_route: dict[str, Any] = {}
        for name in CONFIGS:
            rounds = runs[name][route]
            med = {m: statistics.median(r[m] for r in rounds) for m in METRICS}
            bases = runs["neither"][route]
            paired = [r["cpu_us"] / b["cpu_us"] for r, b in zip(rounds, bases, strict=True)]
            per_route[name] = {
                **{m: round(v, 2) for m, v in med.items()},
                "failures": sum(int(r["failures"]) for r in rounds),
                "rate_ratio": round(med["rate"] / base["rate"], 3),
                "cpu_ratio": round(med["cpu_us"] / base["cpu_us"], 3),
                "cpu_ratio_paired_median": round(statistics.median(paired), 3),
            }
        summary[route] = per_route
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'route':<8} {'config':<12} {'req/s':>7} {'x neither':>9} {'CPU us/req':>10} "
        f"{'x neither':>9} {'p50 ms':>7} {'p99 ms':>7} {'fail':>5}"
    ]
    for route in ROUTES:
        for name, s in summary[route].items():
            lines.append(
                f"{route:<8} {name:<12} {s['rate']:>7.0f} {s['rate_ratio']:>9.3f} "
                f"{s['cpu_us']:>10.0f} {s['cpu_ratio']:>9.3f} {s['p50_ms']:>7.1f} "
                f"{s['p99_ms']:>7.1f} {s['failures']:>5}"
            )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000, help="requests per route, round, config")
    parser.add_argument("--warmup", type=int, default=500, help="per route, before measuring")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=4, help="API keys the payouts rotate over")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 500 (a smoke run)")
    parser.add_argument("--json", action="store_true", help="the results as JSON on stdout")
    parser.add_argument("--out", default=str(ROOT / "bench/results/security_overhead.json"))
    args = parser.parse_args()
    if args.quick:
        args.count, args.warmup, args.rounds, args.concurrency = 500, 200, 2, 32

    started = time.time()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {route: [] for route in ROUTES} for name in CONFIGS
    }
    async with Scratch("security") as scratch:
        keys = [(scratch.key_id, scratch.secret)]
        for _ in range(args.keys - 1):
            created = json.loads(
                scratch.cli("api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                            "--accounts", "*", "--json")
            )  # fmt: skip
            keys.append((created["keyId"], created["secret"]))
        loads = Loads(scratch, keys, args.count, args.warmup)
        names = list(CONFIGS)
        for round_no in range(args.rounds):
            loads.sign_round(f"{uuid.uuid4().hex[:6]}r{round_no}")
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                figures = await one_config(scratch, loads, name, round_no, args.concurrency)
                for route, figure in figures.items():
                    runs[name][route].append(figure)
                    say(
                        f"round {round_no + 1}/{args.rounds} {name:<12} {route:<8} "
                        f"{figure['rate']:7.0f}/s {figure['cpu_us']:6.0f} us CPU/request "
                        f"p99 {figure['p99_ms']:6.1f} ms  failures {figure['failures']:.0f}  "
                        f"load {figure['load']:.1f}"
                    )
    summary = summarise(runs)
    report = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started),
        "args": vars(args),
        "summary": summary,
        "rounds": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # noqa: ASYNC240
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(summary))
        print(f"(medians of {args.rounds} rounds x {args.count} requests; {args.out})")


if __name__ == "__main__":
    uvloop.run(main())  # the client shares the box: spend as little of it as possible
