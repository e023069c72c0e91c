"""Orders end to end: created, paid through signed channel notifications, and settled.

Starts the dev stack itself (`fundhub up`: gateway, notify-ingest, payment-worker, callback
dispatcher, audit writer, the bank and channel simulators, with the dev keys) on a scratch
database and topic namespace of the running Kafka and PostgreSQL, on free ports, and drops them
after. Registers M merchants through the API (the depository simulator approves them), then
per round, on fresh orders:

  create    N orders (`POST /v1/orders`: 3 receivers and a platform fee; half WeChat Pay, half
            Alipay), C in flight. Each is recorded, registered with the depository (the bank
            simulator) and its payment created at the channel simulator before the answer:
            orders/s and the answer's p50/p99.
  notify    each order's payment notification, signed before the clock starts as the channel
            signs it (WeChat Pay: RSA over the headers and the resource sealed with
            AES-256-GCM under the APIv3 key; Alipay: an RSA2-signed form), the channels
            alternating, C in flight: notifications accepted/s and their p50/p99; orders paid
            per second (first notification -> last payment entry in the ledger) and
            accepted -> paid p50/p99.
  settle    `POST /v1/orders/{orderNo}/settle` for each (the platform confirms), C in flight,
            until the ledger holds each settlement's entry (the receivers' pending moved to
            available once the depository's signed split result came back): orders/s and
            settle -> settled p50/p99.
  e2e       N / (first notification -> last settlement entry): orders paid and settled a second.
  baseline  the raw baseline of notify_e2e.py (aiokafka produce + consume, asyncpg batch insert).

Rounds put the baseline after the orders' phases, then before, so drift hits both alike; the
summary is the median of each figure over the rounds. Each phase reports the 1-minute load
average at its end (`uptime`: the box may be shared) and the CPU each of the stack's
processes (and this client, and the scratch database's Postgres backends) spent per order.

    .venv/bin/python bench/orders_e2e.py --quick           # one small round, ~2 minutes
    .venv/bin/python bench/orders_e2e.py --rounds 3 --orders 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import uvloop
from aiokafka.admin import AIOKafkaAdminClient

from fundhub.bank_transfers.bank_apps import SEED_BANK_APP_ID
from fundhub.channel_simulator.keys import MERCHANTS_FILE, own_keys
from fundhub.cli.devstack.channel_dev import (
    CHANNEL_SIM_DIR,
    DEV_ALIPAY_APP_ID,
    DEV_APPID,
    DEV_MCHID,
    DEV_SELLER_ID,
)
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
DEV = ROOT / ".data/dev"
sys.path.insert(0, str(Path(__file__).parent))
from channel_notify import AlipayApp, WechatPayApp, alipay_paid, wechatpay_paid  # noqa: E402
from load_client import signed_post_bytes  # noqa: E402
from notify_e2e import (  # noqa: E402
    Tracker,
    machine,
    pct,
    phase_baseline,
    phase_throughput,
    post_requests,
    watch_commits,
)
from scratch_gateway import (  # noqa: E402
    cli,
    cpu_seconds,
    create_scratch,
    drop_scratch,
    free_port,
    scratch_env,
    wait_ready,
)

# The services `fundhub up` starts, by the setting of the port each listens on.
PORTS = {
    "gateway": "GATEWAY_PORT",
    "gateway-ops": "GATEWAY_OPS_PORT",
    "notify-ingest": "NOTIFY_INGEST_PORT",
    "payment-worker": "PAYMENT_WORKER_PORT",
    "callback-dispatcher": "CALLBACK_DISPATCHER_PORT",
    "audit-writer": "AUDIT_WRITER_PORT",
    "bank-simulator": "BANK_SIMULATOR_PORT",
    "channel-simulator": "CHANNEL_SIMULATOR_PORT",
}
SCOPES = "orders:write,orders:read,merchants:write,merchants:read"
# Published sample numbers with correct check characters (GB 11643, GB 32100): what the
# merchants' validation accepts; nothing real.
SAMPLE_RESIDENT_ID = "11010519491231002X"
SAMPLE_LICENCE = "91350100M000100Y43"


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    ports: dict[str, int]
    dsn: str

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "fundhub"), "up"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped as one, whatever happens here
        )


@asynccontextmanager
async def dev_stack(base: Settings, run: str, log: Path) -> Any:
    """`fundhub up` on a scratch database and namespace, every service on a free port."""
    database, namespace = f"fundhub_bench_orders_{run}", f"bench-orders-{run}"
    dsn = await create_scratch(base, database)
    env = scratch_env(base, dsn, namespace)
    ports = {name: free_port() for name in PORTS}
    env.update({f"FUNDHUB_{setting}": str(ports[name]) for name, setting in PORTS.items()})
    env.update(
        FUNDHUB_ENV="dev",
        FUNDHUB_BANK_BASE_URL=f"http://127.0.0.1:{ports['bank-simulator']}",
        FUNDHUB_WECHATPAY_BASE_URL=f"http://127.0.0.1:{ports['channel-simulator']}",
        FUNDHUB_ALIPAY_GATEWAY_URL=f"http://127.0.0.1:{ports['channel-simulator']}/gateway.do",
    )
    proc = start_up(env, log)
    stack = Stack(proc, env, ports, dsn)
    try:
        for name in PORTS:
            if name != "gateway-ops":
                await wait_ready(stack.url(name), proc)
        yield stack
    finally:
        proc.send_signal(signal.SIGINT)  # the supervisor stops every service, then exits
        try:
            await asyncio.to_thread(proc.wait, 60)
        except BaseException:  # too slow, or interrupted again: the whole group goes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            await drop_scratch(base, database, namespace)


def _children(pid: int) -> dict[int, str]:
    """The stack's processes: ``fundhub up``'s children, by their console script's name."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == pid and len(argv) > 1:
            found[int(entry.name)] = Path(argv[1].decode()).name.removeprefix("fundhub-")
    return found


def _backends(database: str) -> dict[int, str]:
    """The Postgres backends serving ``database`` (their title names it)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            found[int(entry.name)] = "postgres"
    return found


@dataclass
class CpuMeter:
    """CPU seconds of the stack's processes, this client and the database's backends."""

    stack: Stack

    def snapshot(self) -> dict[int, tuple[str, float]]:
        database = self.stack.dsn.rsplit("/", 1)[1]
        seen: dict[int, tuple[str, float]] = {}
        for pid, name in {**_children(self.stack.proc.pid), **_backends(database)}.items():
            try:
                seen[pid] = (name, cpu_seconds(pid))
            except (OSError, IndexError):
                continue
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seen[os.getpid()] = ("client", usage.ru_utime + usage.ru_stime)
        return seen

    @contextmanager
    def measure(self, into: dict[str, Any], orders: int) -> Iterator[None]:
        """CPU ms per order of each process name over the block, into ``into['cpu_ms']``."""
        before = self.snapshot()
        yield
        after = self.snapshot()
        spent: dict[str, float] = {}
        for pid, (name, seconds) in after.items():
            spent[name] = spent.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
        into["cpu_ms_per_order"] = {
            name: round(seconds * 1000 / max(orders, 1), 3)
            for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
        }


def load_1min() -> float:
    return round(os.getloadavg()[0], 2)


# --- merchants and keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    gateway: str
    key_id: str
    secret: str

    @property
    def netloc(self) -> str:
        return urlsplit(self.gateway).netloc

    def post(self, path: str, body: bytes) -> bytes:
        return signed_post_bytes(self.netloc, path, body, self.key_id, self.secret)


async def one_call(client: Client, path: str, body: bytes) -> tuple[int, bytes]:
    """One signed POST, outside any measure (setup)."""
    async with httpx.AsyncClient(timeout=30) as http:
        raw = client.post(path, body)
        head, _, payload = raw.partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        answer = await http.post(client.gateway + path, content=payload, headers=headers)
        return answer.status_code, answer.content


def merchant_body(merchant_no: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "merchantNo": merchant_no,
            "name": f"Bench Shop {i}",
            "type": "ENTERPRISE",
            "legalPerson": {
                "name": "张三",
                "idType": "RESIDENT_ID",
                "idNumber": SAMPLE_RESIDENT_ID,
            },
            "licence": {"licenceNo": SAMPLE_LICENCE, "validUntil": "2035-12-31"},
            "contact": {"name": "李四", "phone": "13800138000", "email": "ops@shop.example"},
        }
    )


async def register_merchants(client: Client, pool: asyncpg.Pool, count: int, run: str) -> list[str]:
    """``count`` merchants through the API, once the depository approved them all."""
    ids = []
    for i in range(count):
        status, body = await one_call(client, "/v1/merchants", merchant_body(f"b{run}m{i}", i))
        if status != 202:
            raise RuntimeError(f"merchant {i}: HTTP {status} {body[:300]!r}")
        ids.append(orjson.loads(body)["merchantId"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = await pool.fetchval(
            "SELECT count(*) FROM merchants WHERE merchant_id = ANY($1) AND state = 'ACTIVE'", ids
        )
        if active == len(ids):
            return ids
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {active} of {len(ids)} merchants became ACTIVE within 60 s")


def channel_apps() -> tuple[WechatPayApp, AlipayApp]:
    """The channel simulator's dev keys (`fundhub up` made them), as it signs notices."""
    sim = DEV / CHANNEL_SIM_DIR
    keys = own_keys(sim)
    merchants = json.loads((sim / MERCHANTS_FILE).read_text())
    apiv3 = next(m["apiv3Key"] for m in merchants["wechatpay"] if m["mchid"] == DEV_MCHID)
    wechat = WechatPayApp(
        keys.platform_key, keys.platform_serial, apiv3.encode(), DEV_APPID, DEV_MCHID
    )
    return wechat, AlipayApp(keys.alipay_key, DEV_ALIPAY_APP_ID, DEV_SELLER_ID)


# --- the phases ------------------------------------------------------------------------------


@dataclass
class Order:
    order_no: str
    channel: str
    amount: int
    body: bytes
    order_id: str = ""


def orders_for(tag: str, count: int, merchants: list[str]) -> list[Order]:
    """3 receivers each (consecutive merchants), a 10 % fee, the channels alternating."""
    out = []
    for i in range(count):
        amount = 3_000 + i % 997
        fee = amount // 10
        share = (amount - fee) // 3
        shares = [share, share, amount - fee - 2 * share]
        receivers = [merchants[(i + k) % len(merchants)] for k in range(3)]
        channel = "WECHATPAY" if i % 2 == 0 else "ALIPAY"
        order_no = f"{tag}-{i}"
        body = orjson.dumps(
            {
                "orderNo": order_no,
                "amount": amount,
                "currency": "CNY",
                "channel": channel,
                "description": "bench order",
                "splits": [
                    {"merchantId": m, "amount": a} for m, a in zip(receivers, shares, strict=True)
                ],
                "platformFee": fee,
            }
        )
        out.append(Order(order_no, channel, amount, body))
    return out


def figures(tracker: Tracker, count: int, started: float, ended: float) -> dict[str, Any]:
    return {
        "count": count,
        "failures": tracker.failures,
        "rate_per_s": round(len(tracker.answered) / (ended - started), 1),
        "p50_ms": round(pct(tracker.latency_ms, 0.5), 1),
        "p99_ms": round(pct(tracker.latency_ms, 0.99), 1),
    }


def lags(since: dict[str, float], until: dict[str, float]) -> tuple[float, float]:
    values = [(until[k] - since[k]) * 1000 for k in until if k in since]
    return round(pct(values, 0.5), 1), round(pct(values, 0.99), 1)


async def phase_create(client: Client, orders: list[Order], concurrency: int) -> dict[str, Any]:
    by_no = {o.order_no: o for o in orders}
    tracker = Tracker()
    refusals: dict[str, int] = {}

    def accepted(order_no: str, status: int, body: bytes) -> bool:
        answer = orjson.loads(body) if body else {}
        if status == 200 and answer.get("state") == "AWAITING_PAYMENT":
            by_no[order_no].order_id = answer["orderId"]
            return True
        code = f"{status} {answer.get('errorCode') or answer.get('state')}"
        refusals[code] = refusals.get(code, 0) + 1
        return False

    started = time.perf_counter()
    await post_requests(
        client.gateway,
        list(by_no),
        lambda order_no: client.post("/v1/orders", by_no[order_no].body),
        accepted,
        concurrency,
        tracker,
    )
    result = figures(tracker, len(orders), started, time.perf_counter())
    return {**result, "refusals": refusals} if refusals else result


def notifications(
    netloc: str, orders: list[Order], apps: tuple[WechatPayApp, AlipayApp], tag: str
) -> dict[str, bytes]:
    """Each created order's payment notification, signed now (before the clock starts)."""
    wechat, alipay = apps
    now = utcnow()
    out: dict[str, bytes] = {}
    for i, order in enumerate(o for o in orders if o.order_id):
        if order.channel == "WECHATPAY":
            transaction = f"42{tag[-6:]:0>6}{i:020d}"
            out[order.order_id] = wechatpay_paid(
                netloc, wechat, order.order_id, transaction, order.amount, now
            )
        else:
            trade = f"2026{tag[-6:]:0>6}{i:018d}"
            out[order.order_id] = alipay_paid(
                netloc, alipay, order.order_id, trade, order.amount, now
            )
    return out


async def watched(
    pool: asyncpg.Pool, tracker: Tracker, ref_type: str, posting: Awaitable[None], timeout_s: float
) -> None:
    """Run ``posting`` while the ledger is watched for the entries (of ``ref_type``) of the ids
    it got answered; return once each one's is seen, or past the timeout."""
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(watch_commits(pool, None, tracker, stop, 0.05, ref_type))
    try:
        await posting
        deadline = time.perf_counter() + timeout_s
        # The watcher fills ``committed`` at its own pace: a look every 50 ms is all it needs.
        while len(tracker.committed) < len(tracker.answered):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await watcher


def accepted_notice(_: str, status: int, body: bytes) -> bool:
    """WeChat Pay's 204, or Alipay's exact ``success``."""
    return status == 204 or (status == 200 and body == b"success")


async def phase_notify(
    pool: asyncpg.Pool,
    gateway: str,
    requests: dict[str, bytes],
    concurrency: int,
    timeout_s: float,
) -> tuple[dict[str, Any], Tracker]:
    tracker = Tracker()
    started = time.perf_counter()
    posted: list[float] = []

    async def posting() -> None:
        await post_requests(
            gateway, list(requests), requests.__getitem__, accepted_notice, concurrency, tracker
        )
        posted.append(time.perf_counter())

    await watched(pool, tracker, "order", posting(), timeout_s)
    paid_p50, paid_p99 = lags(tracker.answered, tracker.committed)
    last = max(tracker.committed.values(), default=time.perf_counter())
    return {
        "accepted": figures(tracker, len(requests), started, posted[0]),
        "paid": {
            "count": len(tracker.committed),
            "rate_per_s": round(len(tracker.committed) / (last - started), 1),
            "accepted_to_paid_p50_ms": paid_p50,
            "accepted_to_paid_p99_ms": paid_p99,
        },
        "started": started,
    }, tracker


async def phase_settle(
    pool: asyncpg.Pool, client: Client, order_nos: list[str], concurrency: int, timeout_s: float
) -> dict[str, Any]:
    posts, ledger = Tracker(), Tracker()
    refusals: dict[str, int] = {}

    def accepted(_: str, status: int, body: bytes) -> bool:
        answer = orjson.loads(body) if body else {}
        if status in (200, 202) and "settlementId" in answer:
            ledger.answered[answer["settlementId"]] = time.perf_counter()
            ledger.unseen.add(answer["settlementId"])
            return True
        code = f"{status} {answer.get('errorCode')}"
        refusals[code] = refusals.get(code, 0) + 1
        return False

    started = time.perf_counter()
    posted: list[float] = []

    async def posting() -> None:
        await post_requests(
            client.gateway,
            order_nos,
            lambda order_no: client.post(f"/v1/orders/{order_no}/settle", b""),
            accepted,
            concurrency,
            posts,
        )
        posted.append(time.perf_counter())

    await watched(pool, ledger, "settlement", posting(), timeout_s)
    last = max(ledger.committed.values(), default=time.perf_counter())
    p50, p99 = lags(ledger.answered, ledger.committed)
    result = {
        "requests": figures(posts, len(order_nos), started, posted[0]),
        "settled": {
            "count": len(ledger.committed),
            "rate_per_s": round(len(ledger.committed) / (last - started), 1),
            "answered_to_settled_p50_ms": p50,
            "answered_to_settled_p99_ms": p99,
        },
        "last": last,
    }
    return {**result, "refusals": refusals} if refusals else result


async def orders_round(
    args: argparse.Namespace,
    stack: Stack,
    client: Client,
    pool: asyncpg.Pool,
    merchants: list[str],
    apps: tuple[WechatPayApp, AlipayApp],
    tag: str,
    count: int,
) -> dict[str, Any]:
    """Create, notify, settle ``count`` fresh orders; the figures of each phase."""
    meter = CpuMeter(stack)
    out: dict[str, Any] = {}
    orders = orders_for(tag, count, merchants)
    with meter.measure(out.setdefault("create", {}), count):
        async with asyncio.timeout(args.timeout):
            out["create"].update(await phase_create(client, orders, args.create_concurrency))
    out["create"]["load_1min"] = load_1min()
    created = [o for o in orders if o.order_id]
    requests = notifications(client.netloc, created, apps, tag)
    with meter.measure(out.setdefault("notify", {}), len(created)):
        async with asyncio.timeout(args.timeout * 2):  # posting, then watching
            notified, tracker = await phase_notify(
                pool, stack.gateway, requests, args.notify_concurrency, args.timeout
            )
    out["notify"].update(notified)
    out["notify"]["load_1min"] = load_1min()
    paid = {o.order_id: o.order_no for o in created}
    order_nos = [paid[order_id] for order_id in tracker.committed]
    with meter.measure(out.setdefault("settle", {}), len(order_nos)):
        async with asyncio.timeout(args.timeout * 2):
            out["settle"].update(
                await phase_settle(pool, client, order_nos, args.settle_concurrency, args.timeout)
            )
    out["settle"]["load_1min"] = load_1min()
    started, last = out["notify"].pop("started"), out["settle"].pop("last")
    settled = out["settle"]["settled"]["count"]
    out["end_to_end"] = {
        "orders": count,
        "paid_and_settled": settled,
        "rate_per_s": round(settled / (last - started), 1),
        "load_1min": load_1min(),
    }
    return out


async def bank_round(
    args: argparse.Namespace, stack: Stack, pool: asyncpg.Pool, count: int, run: str
) -> dict[str, Any]:
    """notify_e2e's throughput phase on this stack: the bank's signed transfer notifications
    end to end, as many at the same concurrency: what the box gives a known path right now."""
    key = (DEV / "bank-sim-private.pem").read_text()
    params = argparse.Namespace(
        count=count,
        app_id=SEED_BANK_APP_ID,
        gateway_url=stack.gateway,
        concurrency=args.notify_concurrency,
    )
    with contextlib.redirect_stdout(sys.stderr):  # its progress line: stdout may be --json's
        result = await phase_throughput(params, pool, key, run)
    return {**result, "load_1min": load_1min()}


async def baseline_round(base: Settings, stack: Stack, count: int, run: str) -> dict[str, Any]:
    """notify_e2e's raw baseline on the same broker and Postgres, its topic dropped after."""
    key = (DEV / "bank-sim-private.pem").read_text()
    params = argparse.Namespace(count=count, app_id=SEED_BANK_APP_ID, database_url=stack.dsn)
    try:
        result = await phase_baseline(params, base, key, run)
    finally:
        kafka = AIOKafkaAdminClient(bootstrap_servers=base.kafka_bootstrap)
        await kafka.start()
        try:
            if f"bench-baseline-{run}" in set(await kafka.list_topics()):
                await kafka.delete_topics([f"bench-baseline-{run}"])
        finally:
            await kafka.close()
    return {**result, "load_1min": load_1min()}


# --- the summary -----------------------------------------------------------------------------

# (label, path in a round's figures) of what the summary reports, each a median over rounds.
FIGURES: list[tuple[str, tuple[str, ...]]] = [
    ("create orders/s", ("create", "rate_per_s")),
    ("create p50 ms", ("create", "p50_ms")),
    ("create p99 ms", ("create", "p99_ms")),
    ("create load", ("create", "load_1min")),
    ("notifications accepted/s", ("notify", "accepted", "rate_per_s")),
    ("accept p50 ms", ("notify", "accepted", "p50_ms")),
    ("accept p99 ms", ("notify", "accepted", "p99_ms")),
    ("paid orders/s", ("notify", "paid", "rate_per_s")),
    ("accepted->paid p50 ms", ("notify", "paid", "accepted_to_paid_p50_ms")),
    ("accepted->paid p99 ms", ("notify", "paid", "accepted_to_paid_p99_ms")),
    ("notify load", ("notify", "load_1min")),
    ("settled orders/s", ("settle", "settled", "rate_per_s")),
    ("settle->settled p50 ms", ("settle", "settled", "answered_to_settled_p50_ms")),
    ("settle->settled p99 ms", ("settle", "settled", "answered_to_settled_p99_ms")),
    ("settle load", ("settle", "load_1min")),
    ("paid+settled orders/s (e2e)", ("end_to_end", "rate_per_s")),
    ("bank notifications e2e/s", ("bank", "end_to_end_rate_per_s")),
    ("bank load", ("bank", "load_1min")),
    ("baseline msg/s", ("baseline", "rate_per_s")),
    ("baseline load", ("baseline", "load_1min")),
    ("ratio accepted/baseline", ("ratios", "accepted")),
    ("ratio paid/baseline", ("ratios", "paid")),
    ("ratio e2e/baseline", ("ratios", "end_to_end")),
    ("ratio paid/bank e2e", ("ratios", "paid_to_bank")),
]


def dig(tree: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for label, path in FIGURES:
        values = [v for r in rounds if (v := dig(r, path)) is not None]
        if values:
            summary[label] = {
                "median": round(statistics.median(values), 3),
                "runs": values,
            }
    return summary


def ratios(round_: dict[str, Any]) -> dict[str, float]:
    raw = round_["baseline"]["rate_per_s"]
    return {
        "accepted": round(round_["notify"]["accepted"]["rate_per_s"] / raw, 4),
        "paid": round(round_["notify"]["paid"]["rate_per_s"] / raw, 4),
        "end_to_end": round(round_["end_to_end"]["rate_per_s"] / raw, 4),
        "paid_to_bank": round(
            round_["notify"]["paid"]["rate_per_s"] / round_["bank"]["end_to_end_rate_per_s"], 4
        ),
    }


def say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=5000, help="orders per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--merchants", type=int, default=50)
    parser.add_argument("--create-concurrency", type=int, default=64)
    parser.add_argument("--notify-concurrency", type=int, default=128)
    parser.add_argument("--settle-concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500, help="orders through every phase first")
    parser.add_argument("--baseline-count", type=int, default=20000)
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a phase may post, then watch"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 600 orders, 10 merchants")
    parser.add_argument("--json", action="store_true", help="only the results, as JSON, on stdout")
    parser.add_argument("--profile", action="store_true", help="keep the stack up until Enter")
    parser.add_argument("--out", default=str(ROOT / "bench/results/orders_e2e.json"))
    args = parser.parse_args()
    if args.quick:
        args.orders, args.rounds, args.merchants = 600, 1, 10
        args.warmup, args.baseline_count = 100, 5000

    base = Settings()
    run = uuid.uuid4().hex[:6]
    log = ROOT / f"bench/results/orders_e2e-{run}.log"
    results: dict[str, Any] = {
        "machine": machine(),
        "run": run,
        "command": " ".join(["bench/orders_e2e.py", *sys.argv[1:]]),
        "rounds": [],
    }
    async with dev_stack(base, run, log) as stack:
        say(args, f"stack up (log {log.relative_to(ROOT)}); load {load_1min()}")
        key = json.loads(
            cli(stack.env, "api-key", "create", "--name", "bench", "--scopes", SCOPES,
                "--accounts", "*", "--json")
        )  # fmt: skip
        client = Client(stack.gateway, key["keyId"], key["secret"])
        pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=2)
        assert pool is not None
        try:
            merchants = await register_merchants(client, pool, args.merchants, run)
            apps = channel_apps()
            say(args, f"{len(merchants)} merchants ACTIVE")
            if args.warmup:
                warm = await orders_round(
                    args, stack, client, pool, merchants, apps, f"w{run}", args.warmup
                )
                say(args, f"warm-up: {json.dumps(warm)}")
            for n in range(args.rounds):
                tag = f"r{n}{run}"
                round_: dict[str, Any] = {}
                # Statistics for the tables the warm-up (or the last round) filled, as
                # autovacuum keeps them: plans cached while a table was empty (a sequential
                # scan of postings in the ledger's balance trigger, of journal_entries in the
                # watcher's query) would otherwise outlive its growth, for up to a minute.
                await pool.execute("ANALYZE")
                # The references after the orders, then before them: drift hits all alike.
                if n % 2 == 1:
                    round_["baseline"] = await baseline_round(base, stack, args.baseline_count, tag)
                    round_["bank"] = await bank_round(args, stack, pool, args.orders, tag)
                round_.update(
                    await orders_round(args, stack, client, pool, merchants, apps, tag, args.orders)
                )
                if n % 2 == 0:
                    round_["bank"] = await bank_round(args, stack, pool, args.orders, tag)
                    round_["baseline"] = await baseline_round(base, stack, args.baseline_count, tag)
                round_["ratios"] = ratios(round_)
                results["rounds"].append(round_)
                say(args, f"round {n}: {json.dumps(round_)}")
            if args.profile:
                await asyncio.to_thread(input, "stack still up; Enter stops it ")
        finally:
            await pool.close()
    results["summary"] = summarise(results["rounds"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # noqa: ASYNC240
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\n{'figure':<30} {'median':>10}   runs")
    for label, value in results["summary"].items():
        runs = ", ".join(f"{v:g}" for v in value["runs"])
        print(f"{label:<30} {value['median']:>10g}   {runs}")


if __name__ == "__main__":
    uvloop.run(main())  # the client shares the box: spend as little of it as possible
