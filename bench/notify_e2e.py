"""Bank notifications end to end: signed POST -> `success` -> committed in the ledger.

Runs against a running stack (`make up`). First a warm-up (not measured): the broker's JIT
compiler alone takes most of a core for the first minute or two after a start. Then three
phases, each on fresh record ids:
  throughput  N notifications posted with C in flight; rate = N / (first POST -> last commit)
  latency     a steady R/s for S seconds; per notification, `success` -> ledger entry committed
  baseline    the same payloads through aiokafka (acks=all, idempotent) produce + consume and an
              asyncpg batch insert, no services: what the hardware does with no fundhub logic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fundhub.bank_simulator.notifications import DEFAULT_APP_ID, TransferSpec, build_many
from fundhub.common.config import Settings

sys.path.insert(0, str(Path(__file__).parent))
from load_client import LoadConnection, post_bytes

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tracker:
    """When each record was answered `success`, and when its ledger entry became visible."""

    answered: dict[str, float] = field(default_factory=dict)
    committed: dict[str, float] = field(default_factory=dict)
    unseen: set[str] = field(default_factory=set)  # answered, commit not yet seen
    latency_ms: list[float] = field(default_factory=list)  # request written -> answer read
    failures: int = 0


async def post_all(
    gateway_url: str,
    items: list[tuple[str, bytes]],
    concurrency: int,
    tracker: Tracker,
    rate: float | None = None,
) -> None:
    """POST each body to /callbacks/bank over ``concurrency`` keep-alive connections."""
    host = urlsplit(gateway_url).netloc
    requests = {r: post_bytes(host, "/callbacks/bank", body) for r, body in items}
    await post_requests(
        gateway_url,
        list(requests),
        requests.__getitem__,
        lambda _id, _status, body: body == b"success",
        concurrency,
        tracker,
        rate,
    )


async def post_requests(
    gateway_url: str,
    ids: list[str],
    build: Callable[[str], bytes],
    accepted: Callable[[str, int, bytes], bool],
    concurrency: int,
    tracker: Tracker,
    rate: float | None = None,
) -> None:
    """Send ``build(id)`` (a whole request) for each id over ``concurrency`` keep-alive
    connections; an answer ``accepted(id, status, body)`` marks the id answered (and unseen)."""
    url = urlsplit(gateway_url)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for item in ids:
        queue.put_nowait(item)
    connections = await open_connections(url, concurrency)
    started = time.perf_counter()

    async def worker(connection: LoadConnection) -> None:
        while not queue.empty():
            record_id = queue.get_nowait()
            if rate:
                # Open-loop pacing: the k-th request of the run leaves at k / rate.
                due = started + (len(ids) - queue.qsize() - 1) / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            request = build(record_id)
            sent = time.perf_counter()
            status, body = await connection.send(request)
            now = time.perf_counter()
            if accepted(record_id, status, body):
                tracker.answered[record_id] = now
                tracker.unseen.add(record_id)
                tracker.latency_ms.append((now - sent) * 1000)
            else:
                tracker.failures += 1

    await run_workers(connections, worker)


async def open_connections(url: SplitResult, count: int) -> list[LoadConnection]:
    """``count`` keep-alive connections to the host of ``url``."""
    host, port = url.hostname or "127.0.0.1", url.port or 80
    return [await LoadConnection.open(host, port) for _ in range(count)]


async def run_workers(
    connections: list[LoadConnection], worker: Callable[[LoadConnection], Awaitable[None]]
) -> None:
    """One ``worker`` per connection, all at once; the connections are closed after."""
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()


async def poll_unseen(
    db: asyncpg.Pool | asyncpg.Connection, query: str, unseen: set[str], key: str, *params: object
) -> tuple[list[asyncpg.Record], float]:
    """Ask ``query`` (its $1 a text array, then ``params``) about up to 2,000 of the ``unseen``
    ids: the rows found and when they were, each row's ``key`` no longer unseen."""
    asked = list(unseen)[:2000]
    if not asked:
        return [], time.perf_counter()
    rows = await db.fetch(query, asked, *params)
    now = time.perf_counter()
    for row in rows:
        unseen.discard(row[key])
    return rows, now


async def watch_commits(
    pool: asyncpg.Pool,
    ids: list[str] | None,
    tracker: Tracker,
    stop: asyncio.Event,
    every_s: float,
    ref_type: str = "bank_transfer_record",
) -> None:
    """Poll the ledger for answered ids not yet seen committed (journal entries of
    ``ref_type`` with that ``ref_id``); a hit is timestamped then.

    Only answered ids are asked about, so the query stays small and a commit is seen within
    one poll of happening: every 5 ms for per-notification latencies; every 50 ms for the
    throughput phase, which needs only the last commit and would otherwise spend the box's
    CPU on watching (the error is at most 50 ms over a run of 20 s or more)."""
    remaining = set(ids) if ids is not None else None  # None: until ``stop``
    while (remaining is None or remaining) and not stop.is_set():
        rows, now = await poll_unseen(
            pool,
            "SELECT ref_id FROM journal_entries WHERE ref_type = $2 AND ref_id = ANY($1::text[])",
            tracker.unseen,
            "ref_id",
            ref_type,
        )
        for row in rows:
            tracker.committed.setdefault(row["ref_id"], now)
            if remaining is not None:
                remaining.discard(row["ref_id"])
        await asyncio.sleep(every_s)


def prepare(run: str, phase: str, count: int, app_id: str, key: str) -> list[tuple[str, bytes]]:
    specs = [
        TransferSpec(
            record_id=f"b{run}{phase}{i}", in_acct_no=f"88{i % 500:08d}", trans_amount=100 + i % 977
        )
        for i in range(count)
    ]
    signed = build_many(specs, app_id, key)
    return [
        (s.record_id, json.dumps(p, ensure_ascii=False).encode())
        for s, p in zip(specs, signed, strict=True)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def phase_throughput(
    args: argparse.Namespace, pool: asyncpg.Pool, key: str, run: str
) -> dict[str, float]:
    items = prepare(run, "t", args.count, args.app_id, key)
    tracker = Tracker()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(  # noqa: RUF006
        watch_commits(pool, [i for i, _ in items], tracker, stop, every_s=0.05)
    )
    print(json.dumps({"throughput": "posting", "notifications": len(items)}), flush=True)
    started = time.perf_counter()
    await post_all(args.gateway_url, items, args.concurrency, tracker)
    posted = time.perf_counter()
    await asyncio.wait_for(watcher, timeout=120)
    done = max(tracker.committed.values())
    return {
        "notifications": len(items),
        "failures": tracker.failures,
        "post_rate_per_s": round(len(items) / (posted - started), 1),
        "end_to_end_rate_per_s": round(len(items) / (done - started), 1),
    }


async def phase_latency(
    args: argparse.Namespace, pool: asyncpg.Pool, key: str, run: str
) -> dict[str, float]:
    count = int(args.rate * args.seconds)
    items = prepare(run, "l", count, args.app_id, key)
    tracker = Tracker()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(  # noqa: RUF006
        watch_commits(pool, [i for i, _ in items], tracker, stop, every_s=0.005)
    )
    await post_all(args.gateway_url, items, 64, tracker, rate=args.rate)
    await asyncio.wait_for(watcher, timeout=120)
    lags = [
        max(0.0, tracker.committed[r] - tracker.answered[r]) * 1000
        for r in tracker.answered
        if r in tracker.committed
    ]
    return {
        "rate_per_s": args.rate,
        "notifications": count,
        "failures": tracker.failures,
        "success_to_commit_p50_ms": round(statistics.median(lags), 1),
        "success_to_commit_p99_ms": round(pct(lags, 0.99), 1),
        "success_to_commit_max_ms": round(max(lags), 1),
    }


async def phase_baseline(
    args: argparse.Namespace, settings: Settings, key: str, run: str
) -> dict[str, float]:
    payloads = [body for _, body in prepare(run, "r", args.count, args.app_id, key)]
    topic = f"bench-baseline-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 6, 1)])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    conn = await asyncpg.connect(args.database_url)
    await conn.execute(f"CREATE TEMP TABLE bench_{run} (id text PRIMARY KEY, body bytea)")
    await producer.start()
    await consumer.start()
    started = time.perf_counter()

    async def produce() -> None:
        futures = [
            await producer.send(topic, value=p, key=str(i % 500).encode())
            for i, p in enumerate(payloads)
        ]
        await asyncio.gather(*futures)

    async def consume() -> None:
        seen = 0
        while seen < len(payloads):
            polled = await consumer.getmany(timeout_ms=200, max_records=500)
            records = [r for batch in polled.values() for r in batch]
            if not records:
                continue
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO bench_{run} (id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(f"{r.partition}-{r.offset}", r.value) for r in records],
                )
            await consumer.commit()
            seen += len(records)

    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    await conn.close()
    return {"messages": len(payloads), "rate_per_s": round(len(payloads) / elapsed, 1)}


def write_results(path: Path, results: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def stack_arguments(doc: str | None, settings: Settings) -> argparse.ArgumentParser:
    """The options every benchmark shares: where the running stack is, and the dev bank key."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway-url", default=f"http://127.0.0.1:{settings.gateway_port}")
    parser.add_argument("--database-url", default=settings.database_url)
    parser.add_argument("--app-id", default=DEFAULT_APP_ID)
    parser.add_argument(
        "--private-key-file",
        default=os.environ.get(
            "FUNDHUB_BANK_SIM_PRIVATE_KEY_FILE", str(ROOT / ".data/dev/bank-sim-private.pem")
        ),
    )
    return parser


async def main() -> None:
    settings = Settings()
    parser = stack_arguments(__doc__, settings)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--phases", default="throughput,latency,baseline")
    parser.add_argument(
        "--warmup", type=int, default=10000, help="notifications posted before measuring (0: none)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds of quiet before the latency phase (autovacuum after the throughput phase)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/notify_e2e.json"))
    args = parser.parse_args()
    key = Path(args.private_key_file).read_text()  # noqa: ASYNC240 (before the clock starts)
    run = uuid.uuid4().hex[:6]
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    assert pool is not None
    results: dict[str, object] = {"machine": machine(), "run": run}
    phases = args.phases.split(",")
    if args.warmup:
        warm = argparse.Namespace(**{**vars(args), "count": args.warmup})
        results["warmup"] = await phase_throughput(warm, pool, key, run + "w")
        print(json.dumps({"warmup": results["warmup"]}), flush=True)
    if "throughput" in phases:
        results["throughput"] = await phase_throughput(args, pool, key, run)
        print(json.dumps({"throughput": results["throughput"]}), flush=True)
    if "latency" in phases:
        if "throughput" in phases or args.warmup:
            # The latency phase measures steady state at R/s, not the recovery from a saturating
            # phase (autovacuum of the tables it filled, the relay catching up).
            await asyncio.sleep(args.settle)
        results["latency"] = await phase_latency(args, pool, key, run)
        print(json.dumps({"latency": results["latency"]}), flush=True)
    if "baseline" in phases:
        results["baseline"] = await phase_baseline(args, settings, key, run)
        print(json.dumps({"baseline": results["baseline"]}), flush=True)
    if "throughput" in results and "baseline" in results:
        e2e = results["throughput"]["end_to_end_rate_per_s"]  # type: ignore[index]
        raw = results["baseline"]["rate_per_s"]  # type: ignore[index]
        results["ratio_to_baseline"] = round(e2e / raw, 3)
    await pool.close()
    await asyncio.to_thread(write_results, Path(args.out), results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    uvloop.run(main())  # the client shares the box: spend as little of it as possible
