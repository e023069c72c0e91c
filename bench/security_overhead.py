"""What the audit log and the rate limits cost the two hot routes, in one run.

Four gateway configurations, each its own `fundhub-gateway` process, started at once on a
scratch database and topic namespace of the running Kafka and PostgreSQL (`scratch_gateway.py`;
no `make up` needed):

  neither      FUNDHUB_AUDIT_ENABLED=false  FUNDHUB_RATE_LIMITS_ENABLED=false
  rate_limits  false                        true
  audit        true                         false
  both         true                         true

After a warm-up of each, R rounds; in each, every configuration in turn (the order rotates
from round to round) gets N signed `POST /callbacks/bank` (transfer notifications, answered
`success` once Kafka acked) and N signed `POST /v1/payouts` (202 once committed in Postgres)
at C in flight, routes in alternating order. Short phases, many rounds: on a shared machine
other people's load comes and goes within seconds, and what matters is that it falls on all
four alike. Per configuration and route: the rate, p50/p99 latency and the gateway's CPU per
request (/proc). The summary is the median over the rounds and each configuration's ratio to
`neither`.

Rate limits run with the defaults of `fundhub.common.config` (leases of 50 for the bank's
5000/second per address, of 10 for 1000/second per key); payouts go round-robin over
``--keys`` API keys so that no key nears its limit whatever rate the box reaches.

    .venv/bin/python bench/security_overhead.py                  # 15 rounds x 1,500 per route
    .venv/bin/python bench/security_overhead.py --quick --json   # a smoke run, JSON on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from load_client import post_bytes
from notify_e2e import machine, prepare
from payouts_e2e import signed_payout
from scratch_gateway import APP_ID, ROOT, GatewayProcess, Scratch, load_average, measure

CONFIGS: dict[str, dict[str, str]] = {
    "neither": {"FUNDHUB_AUDIT_ENABLED": "false", "FUNDHUB_RATE_LIMITS_ENABLED": "false"},
    "rate_limits": {"FUNDHUB_AUDIT_ENABLED": "false", "FUNDHUB_RATE_LIMITS_ENABLED": "true"},
    "audit": {"FUNDHUB_AUDIT_ENABLED": "true", "FUNDHUB_RATE_LIMITS_ENABLED": "false"},
    "both": {"FUNDHUB_AUDIT_ENABLED": "true", "FUNDHUB_RATE_LIMITS_ENABLED": "true"},
}
ROUTES = ("bank", "payouts")
OK = {"bank": 200, "payouts": 202}
CPU = "cpu_us_per_request"
METRICS = ("rate", CPU, "p50_ms", "p99_ms")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Loads:
    """Signed requests: the bank's notifications are signed once per round (RSA, about 1 ms
    each) and sent to every configuration's gateway alike; payouts are signed just before they
    are sent (a fresh nonce each, HMAC), round-robin over the keys."""

    def __init__(self, scratch: Scratch, keys: list[tuple[str, str]]) -> None:
        self.scratch, self.keys = scratch, keys
        self.notices: list[bytes] = []
        self._payouts = 0

    def sign_round(self, tag: str, count: int) -> None:
        signed = prepare(tag, "s", count, APP_ID, self.scratch.bank_private_pem)
        self.notices = [body for _, body in signed]

    def bank(self, gateway: GatewayProcess) -> list[bytes]:
        return [post_bytes(gateway.netloc, "/callbacks/bank", body) for body in self.notices]

    def payouts(self, gateway: GatewayProcess) -> list[bytes]:
        out = []
        for _ in range(len(self.notices)):
            i = self._payouts = self._payouts + 1
            key_id, secret = self.keys[i % len(self.keys)]
            out.append(signed_payout(gateway.netloc, key_id, secret, f"77{i % 500:08d}", i))
        return out


MODES = ("saturated", "paced")


async def phase(
    gateway: GatewayProcess,
    loads: Loads,
    route: str,
    concurrency: int,
    rate: float | None = None,
    count: int | None = None,
) -> dict[str, float]:
    """``count`` requests of ``route`` (default: as many as the round signed notifications),
    as fast as answered or at ``rate``."""
    requests = loads.bank(gateway) if route == "bank" else loads.payouts(gateway)
    return await measure(gateway.url, requests[:count], concurrency, gateway.pid, OK[route], rate)


Runs = dict[str, dict[str, dict[str, list[dict[str, float]]]]]  # mode -> config -> route


def summarise(runs: Runs, rates: dict[str, float]) -> dict[str, Any]:
    """Per mode, route and configuration: medians over the rounds and their ratios to
    ``neither``; also the median of the per-round CPU ratios (a round's configurations ran
    seconds apart, under alike load)."""
    summary: dict[str, Any] = {}
    for mode in MODES:
        summary[mode] = {}
        for route in ROUTES:
            bases = runs[mode]["neither"][route]
            base = {m: statistics.median(r[m] for r in bases) for m in METRICS}
            per_route: dict[str, Any] = {}
            for name in CONFIGS:
                rounds = runs[mode][name][route]
                med = {m: statistics.median(r[m] for r in rounds) for m in METRICS}
                paired = [r[CPU] / b[CPU] for r, b in zip(rounds, bases, strict=True)]
                per_route[name] = {
                    **{m: round(v, 2) for m, v in med.items()},
                    "failures": sum(int(r["failures"]) for r in rounds),
                    "rate_ratio": round(med["rate"] / base["rate"], 3),
                    "cpu_ratio": round(med[CPU] / base[CPU], 3),
                    "cpu_ratio_paired_median": round(statistics.median(paired), 3),
                }
            summary[mode][route] = per_route
    summary["paced_rates"] = rates
    return summary


def table(summary: dict[str, Any]) -> str:
    rates = summary["paced_rates"]
    lines = [
        f"{'':21} {'saturated (C in flight)':^42} | {'paced (fixed rate)':^30}",
        f"{'route':<8} {'config':<12} {'req/s':>7} {'x':>6} {'CPU us/req':>10} {'x':>6} "
        f"{'p99 ms':>7} {'fail':>4} | {'req/s':>6} {'CPU us/req':>10} {'x':>6} {'p99 ms':>6}",
    ]
    for route in ROUTES:
        for name in CONFIGS:
            s, p = summary["saturated"][route][name], summary["paced"][route][name]
            lines.append(
                f"{route:<8} {name:<12} {s['rate']:>7.0f} {s['rate_ratio']:>6.3f} "
                f"{s[CPU]:>10.0f} {s['cpu_ratio']:>6.3f} {s['p99_ms']:>7.1f} "
                f"{s['failures'] + p['failures']:>4} | {rates[route]:>6.0f} {p[CPU]:>10.0f} "
                f"{p['cpu_ratio']:>6.3f} {p['p99_ms']:>6.1f}"
            )
    return "\n".join(lines)


async def extra_keys(scratch: Scratch, count: int) -> list[tuple[str, str]]:
    keys = [(scratch.key_id, scratch.secret)]
    for _ in range(count - 1):
        created = json.loads(
            scratch.cli("api-key", "create", "--name", "bench", "--scopes", "payouts:write",
                        "--accounts", "*", "--json")
        )  # fmt: skip
        keys.append((created["keyId"], created["secret"]))
    return keys


async def run_rounds(args: argparse.Namespace, scratch: Scratch) -> tuple[Runs, dict[str, float]]:
    loads = Loads(scratch, await extra_keys(scratch, args.keys))
    runs: Runs = {
        mode: {name: {route: [] for route in ROUTES} for name in CONFIGS} for mode in MODES
    }
    gateways: dict[str, GatewayProcess] = {}
    try:
        for name, settings in CONFIGS.items():
            log = scratch.workdir / f"gateway-{name}.log"
            gateways[name] = GatewayProcess(scratch, settings, log)
        await asyncio.gather(*(g.ready() for g in gateways.values()))
        loads.sign_round(uuid.uuid4().hex[:8], max(args.warmup, args.count))
        for gateway in gateways.values():  # pools, caches, leases; not measured
            for route in ROUTES:
                await phase(gateway, loads, route, args.concurrency, count=args.warmup)
        # The paced rate: a share of what `neither` does saturated right now, unless given.
        rates = {}
        for route in ROUTES:
            calibration = await phase(gateways["neither"], loads, route, args.concurrency)
            rates[route] = args.rate or round(calibration["rate"] * args.paced_share, -1)
        say(f"paced rates: {rates}")
        names = list(CONFIGS)
        for round_no in range(args.rounds):
            loads.sign_round(f"{uuid.uuid4().hex[:6]}r{round_no}", args.count)
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            routes = ROUTES if round_no % 2 == 0 else tuple(reversed(ROUTES))
            for name in order:
                for route in routes:
                    gateway = gateways[name]
                    saturated = await phase(gateway, loads, route, args.concurrency)
                    paced = await phase(
                        gateway, loads, route, args.concurrency, rates[route], args.paced_count
                    )
                    runs["saturated"][name][route].append(saturated)
                    runs["paced"][name][route].append(paced)
                    say(
                        f"round {round_no + 1}/{args.rounds} {name:<12} {route:<8} "
                        f"{saturated['rate']:6.0f}/s {saturated[CPU]:5.0f} us/req "
                        f"p99 {saturated['p99_ms']:5.1f} ms | at {paced['rate']:4.0f}/s "
                        f"{paced[CPU]:5.0f} us/req p99 {paced['p99_ms']:5.1f} ms | "
                        f"failures {saturated['failures'] + paced['failures']:.0f} "
                        f"load {paced['load']:.1f}"
                    )
    finally:
        for gateway in gateways.values():
            gateway.stop()
    return runs, rates


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1500, help="saturated: requests per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--paced-count", type=int, default=600, help="paced: requests per phase")
    parser.add_argument("--rate", type=float, help="paced: requests/s (default: see below)")
    parser.add_argument(
        "--paced-share",
        type=float,
        default=0.5,
        help="paced rate, without --rate: this share of `neither` saturated after warm-up",
    )
    parser.add_argument("--warmup", type=int, default=500, help="per route and gateway")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keys", type=int, default=4, help="API keys the payouts rotate over")
    parser.add_argument("--quick", action="store_true", help="3 short rounds (a smoke run)")
    parser.add_argument("--json", action="store_true", help="the results as JSON on stdout")
    parser.add_argument("--out", default=str(ROOT / "bench/results/security_overhead.json"))
    args = parser.parse_args()
    if args.quick:
        args.count, args.paced_count, args.warmup, args.rounds = 400, 200, 200, 3

    started = time.time()
    load_before = load_average()
    async with Scratch("security") as scratch:
        runs, rates = await run_rounds(args, scratch)
    report = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started),
        "load_average_before": load_before,
        "args": vars(args),
        "summary": summarise(runs, rates),
        "rounds": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # noqa: ASYNC240
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report["summary"]))  # type: ignore[arg-type]
        print(f"(medians of {args.rounds} rounds; {args.out})")


if __name__ == "__main__":
    uvloop.run(main())  # the client shares the box: spend as little of it as possible
