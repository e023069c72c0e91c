"""Does the hot path slow down as the inbox and outbox history grows, and does purging keep it flat?

Two databases on the same server, built by the migrations: `fresh`, and `history`, into which
tens of millions of old rows are generated in SQL (generate_series): inbox ids 8 to 60 days old
(past the 7-day dedupe window) under the real consumers' names, and published outbox rows of
realistic size. The hot path is notify-ingest's transaction: a batch of bank transfer
notifications applied (inbox claim, ledger postings, records, notifications, outbox events), then
the relay's marking of the events as published, as the service does it (Kafka left out: what it
costs does not depend on the database's history). The phases alternate between the databases,
round by round, so that the shared machine's drift falls on both alike:

  grown    fresh vs history (the unbounded tables of today)
  purge    fundhub.common.retention.purge on history: rows/s, batches of 5,000, then VACUUM
  purged   fresh vs history again

Prints the rates, their ratios (history / fresh) and the sizes; results in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from fundhub.bank_simulator.notifications import TransferSpec, biz_content
from fundhub.bank_transfers.apply import CONSUMER, apply_transfer_notifications
from fundhub.bank_transfers.messages import TransferMessage
from fundhub.bank_transfers.notification import notification_message_id, parse_transfer_biz_content
from fundhub.common import db, migrations
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.logging import configure_logging
from fundhub.common.retention import RetentionPolicy, purge
from fundhub.common.topics import Topics
from fundhub.merchants.lookup import ClosedMerchantAccounts

ROOT = Path(__file__).resolve().parents[1]
APP = "20210911888888888888888888"
TOPICS = Topics("bench")
POLICY = RetentionPolicy(inbox_window_s=7 * 86400, outbox_keep_s=3600, batch=5000)
# The relay's statement (fundhub.common.outbox), without the send.
MARK_PUBLISHED = (
    "UPDATE outbox SET published_at = now() WHERE id IN ("
    "  SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1"
    "  FOR UPDATE SKIP LOCKED) RETURNING id"
)
# Consumers that share the inbox, in the history's proportions.
CONSUMERS = (CONSUMER, "order-notifications", "payout-results", "callback-intake", "audit")


def dsn_for(base: str, name: str) -> str:
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}"


def messages(tag: str, count: int, accounts: int) -> list[TransferMessage]:
    found = []
    for i in range(count):
        spec = TransferSpec(
            record_id=f"hg-{tag}-{i}", in_acct_no=f"78{i % accounts:06d}", trans_amount=100 + i
        )
        text = biz_content(spec)
        found.append(
            TransferMessage(
                message_id=notification_message_id(APP, text),
                correlation_id=uuid.uuid4().hex,
                app_id=APP,
                params={"method": "bkfunds.acct.transfer.notify", "biz_content": text},
                notice=parse_transfer_biz_content(text),
                received_at=utcnow(),
            )
        )
    return found


async def hot_path(pool: asyncpg.Pool, batches: Sequence[list[TransferMessage]]) -> float:
    """Notifications per second: batches applied by two workers while a relay marks events."""
    queue: asyncio.Queue[list[TransferMessage]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    closed = ClosedMerchantAccounts()
    done = asyncio.Event()

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            async with pool.acquire() as conn, conn.transaction():
                result = await apply_transfer_notifications(conn, TOPICS, batch, closed)
            assert result.applied == len(batch), result

    async def relay() -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                marked = await conn.fetch(MARK_PUBLISHED, 500)
            if not marked:
                if done.is_set():
                    return
                await asyncio.sleep(0.01)

    started = time.perf_counter()
    relaying = asyncio.create_task(relay())
    await asyncio.gather(worker(), worker())
    done.set()
    await relaying
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


async def generate_history(conn: asyncpg.Connection, inbox_rows: int, outbox_rows: int) -> None:
    """Old rows in SQL. The indexes are dropped first and built again after (a sort, not tens
    of millions of random inserts): the same structure, packed denser than one grown by use."""
    consumers = "ARRAY[" + ",".join(f"'{c}'" for c in CONSUMERS) + "]"
    await conn.execute("ALTER TABLE inbox DROP CONSTRAINT inbox_pkey")
    await conn.execute("DROP INDEX inbox_processed_at")
    await conn.execute(
        "INSERT INTO inbox (consumer, message_id, processed_at)"
        f" SELECT ({consumers})[1 + g % {len(CONSUMERS)}], md5(g::text),"
        "  now() - interval '60 days' + (g::float / $1) * interval '52 days'"
        " FROM generate_series(1, $1) g",
        inbox_rows,
    )
    await conn.execute("ALTER TABLE inbox ADD PRIMARY KEY (consumer, message_id)")
    await conn.execute("CREATE INDEX inbox_processed_at ON inbox (processed_at)")
    await conn.execute("DROP INDEX outbox_unpublished")
    await conn.execute("DROP INDEX outbox_published_at")
    await conn.execute("ALTER TABLE outbox DROP CONSTRAINT outbox_pkey")
    # A ledger event is about 600 bytes of JSON (bank.transfer.applied, measured below).
    await conn.execute(
        "INSERT INTO outbox (topic, key, payload, headers, created_at, published_at)"
        " SELECT 'bench.ledger.events', '78' || lpad((g % 500)::text, 6, '0'),"
        "  convert_to(repeat(md5(g::text), 19), 'UTF8'), '{\"correlation_id\": \"x\"}',"
        "  t, t + interval '20 ms'"
        " FROM generate_series(1, $1) g,"
        "  LATERAL (SELECT now() - interval '60 days' + (g::float / $1) * interval '59 days') s(t)",
        outbox_rows,
    )
    await conn.execute("SELECT setval('outbox_id_seq', (SELECT max(id) FROM outbox))")
    await conn.execute("ALTER TABLE outbox ADD PRIMARY KEY (id)")
    await conn.execute("CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL")
    await conn.execute(
        "CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL"
    )
    await conn.execute("VACUUM ANALYZE inbox")
    await conn.execute("VACUUM ANALYZE outbox")


async def sizes(dsn: str) -> dict[str, dict[str, float]]:
    """Rows, bytes on disk with indexes, and the average row (pg_column_size) per table; on a
    connection of its own, with no statement timeout (tens of millions of rows are read)."""
    found: dict[str, dict[str, float]] = {}
    conn = await asyncpg.connect(dsn)
    for table in (
        "inbox",
        "outbox",
        "journal_entries",
        "postings",
        "bank_notifications",
        "bank_transfer_records",
    ):
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, pg_total_relation_size('{table}') AS total,"
            f" coalesce(avg(pg_column_size(t.*)), 0) AS avg_row FROM {table} t"
        )
        assert row is not None
        found[table] = {k: float(row[k]) for k in ("n", "total", "avg_row")}
    await conn.close()
    return found


async def measure_rounds(
    pools: dict[str, asyncpg.Pool], rounds: int, count: int, batch: int, phase: str
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in pools}
    for r in range(rounds):
        for name, pool in pools.items():
            items = messages(f"{phase}{r}{name}{uuid.uuid4().hex[:6]}", count, 500)
            rate = await hot_path(pool, [items[i : i + batch] for i in range(0, count, batch)])
            rates[name].append(rate)
            print(f"  {phase} round {r + 1}: {name:8s} {rate:8.0f}/s", flush=True)
    return rates


async def main(args: argparse.Namespace) -> None:
    configure_logging("bench-history-growth", "WARNING")  # a line per notification costs CPU
    settings = Settings()
    tag = uuid.uuid4().hex[:6]
    names = {"fresh": f"fundhub_bench_fresh_{tag}", "history": f"fundhub_bench_history_{tag}"}
    admin = await asyncpg.connect(settings.database_url)
    pools: dict[str, asyncpg.Pool] = {}
    report: dict[str, object] = {
        "inbox_rows": args.inbox_rows,
        "outbox_rows": args.outbox_rows,
        "count": args.count,
        "batch": args.batch,
        "rounds": args.rounds,
        "loadavg_start": os.getloadavg(),
        "host": platform.node(),
    }
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
            await migrations.migrate(dsn_for(settings.database_url, name))
        for key, name in names.items():
            pools[key] = await db.connect_pool(dsn_for(settings.database_url, name), max_size=4)
        started = time.perf_counter()
        # Its own connection, with no statement timeout (the app's pool has one).
        bulk = await asyncpg.connect(dsn_for(settings.database_url, names["history"]))
        await generate_history(bulk, args.inbox_rows, args.outbox_rows)
        report["generate_s"] = time.perf_counter() - started
        print(f"history generated in {report['generate_s']:.0f} s", flush=True)
        await measure_rounds(pools, 1, args.count, args.batch, "warm-up")
        grown = await measure_rounds(pools, args.rounds, args.count, args.batch, "grown")
        report["sizes_grown"] = await sizes(dsn_for(settings.database_url, names["history"]))
        started = time.perf_counter()
        purged_rows = await purge(pools["history"], POLICY, max_batches=1_000_000)
        purge_s = time.perf_counter() - started
        await bulk.execute("VACUUM ANALYZE inbox")
        await bulk.execute("VACUUM ANALYZE outbox")
        await bulk.close()
        report["purge"] = {
            "inbox": purged_rows.inbox,
            "outbox": purged_rows.outbox,
            "seconds": purge_s,
            "rows_per_s": (purged_rows.inbox + purged_rows.outbox) / purge_s,
            "vacuum_s": time.perf_counter() - started - purge_s,
        }
        print(f"purge: {report['purge']}", flush=True)
        after = await measure_rounds(pools, args.rounds, args.count, args.batch, "purged")
        report["sizes_purged"] = await sizes(dsn_for(settings.database_url, names["history"]))
        report["sizes_fresh"] = await sizes(dsn_for(settings.database_url, names["fresh"]))
        report["rates"] = {"grown": grown, "purged": after}
        report["ratio_grown"] = statistics.median(grown["history"]) / statistics.median(
            grown["fresh"]
        )
        report["ratio_purged"] = statistics.median(after["history"]) / statistics.median(
            after["fresh"]
        )
        report["loadavg_end"] = os.getloadavg()
    finally:
        for pool in pools.values():
            await pool.close()
        print(json.dumps(report, indent=2, default=str))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"history_growth-{int(time.time())}.json").write_text(
            json.dumps(report, default=str)
        )
        if not args.keep:
            for name in names.values():
                await drop_database(admin, name)
        await admin.close()


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """FORCE cannot end an autovacuum worker busy on a just-used database: try again."""
    for attempt in range(20):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 19:
                raise
            await asyncio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inbox-rows", type=int, default=20_000_000)
    parser.add_argument("--outbox-rows", type=int, default=10_000_000)
    parser.add_argument("--count", type=int, default=10_000, help="notifications per measure")
    parser.add_argument("--batch", type=int, default=200, help="notifications per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the two databases")
    asyncio.run(main(parser.parse_args()))
