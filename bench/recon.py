"""Reconciliation at scale: 1,000,000 platform records of one day against WeChat Pay's bill of
about as many lines, with a few thousand discrepancies of every class, timed from the file's
bytes to the run's counts through the code ``fundhub recon import`` runs (``intake.take_stream``:
the file read in chunks, parsed as it comes in a worker thread while COPY loads the lines, the
summary checked at the end, then ``matching.reconcile``'s set-based SQL, in one transaction).

Before the clock starts: the platform's records (900,000 paid orders, 100,000 refunds of them,
and the closed orders the status mismatches name) are written by COPY into a scratch database,
and the bill is written by the channel simulator's own writer (in a child process, so the
bench's peak RSS is the import's) to a file, gzip with ``--gzip``. The run's counts are checked
against what was injected, class by class; a wrong count fails the benchmark.

    .venv/bin/python bench/recon.py                 # 900,000 payments + 100,000 refunds
    .venv/bin/python bench/recon.py --gzip
    .venv/bin/python bench/recon.py --whole         # as before: parsed whole, then loaded
    .venv/bin/python bench/recon.py --payments 90000 --refunds 10000 --per-class 300
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import asyncpg

from fundhub.channel_simulator.bills import BillRow, wechatpay_bill
from fundhub.common import db, migrations
from fundhub.common.clock import BANK_TZ
from fundhub.common.config import Settings
from fundhub.reconciliation.fees import DEFAULT_CHANNEL_FEE_PPM, channel_fee
from fundhub.reconciliation.intake import take_statement, take_stream
from fundhub.reconciliation.statement import Source
from fundhub.reconciliation.store import sha256_of
from fundhub.reconciliation.wechatpay_bill import parse_wechatpay_bill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch_gateway import cpu_seconds, create_scratch

DAY = date(2026, 6, 1)
START = datetime.combine(DAY, dtime(0), tzinfo=BANK_TZ)
SPAN_US = 86_000_000_000  # payments spread over the day's first 23 h 53 min
KEY = "ak_bench_recon"


class Plan:
    """Which index falls in which class: consecutive blocks of ``k`` payments."""

    def __init__(self, payments: int, refunds: int, k: int, carried: int) -> None:
        if payments < 4 * k + carried or refunds > payments:
            raise SystemExit("too few payments for the discrepancies asked")
        self.payments, self.refunds, self.k, self.carried = payments, refunds, k, carried

    def klass(self, i: int) -> str:
        k = self.k
        if i < k:
            return "missing_at_channel"
        if i < 2 * k:
            return "amount_mismatch"
        if i < 3 * k:
            return "fee_difference"
        if i < 4 * k:
            return "duplicate"
        if i < 4 * k + self.carried:
            return "carried"
        return "matched"

    def lines(self) -> int:
        return self.payments + self.refunds + 2 * self.k - self.carried

    def expected(self) -> dict[str, int]:
        k = self.k
        return {
            "matched": self.payments - 3 * k - self.carried + self.refunds,
            "missing_on_platform": k,
            "missing_at_channel": k,
            "amount_mismatch": k,
            "status_mismatch": k,
            "duplicate": k,
            "fee_difference": k,
        }


def order_id(i: int) -> str:
    return f"ORD20260601{i:010d}"


def amount(i: int) -> int:
    return 100 + (i * 7919) % 500_000


# One time per second of the day, made once: a line's time is picked from here (a datetime
# built per line would cost more than the rest of the line).
SECONDS = [START + timedelta(seconds=s) for s in range(SPAN_US // 1_000_000)]
LAST_MOMENT = START + timedelta(days=1) - timedelta(milliseconds=100)


def paid_at(plan: Plan, i: int) -> datetime:
    if plan.klass(i) == "carried":
        return LAST_MOMENT
    return SECONDS[(i * len(SECONDS)) // plan.payments]


async def write_platform(conn: asyncpg.Connection, plan: Plan) -> None:
    def orders() -> Iterator[tuple[object, ...]]:
        for i in range(plan.payments):
            yield (
                order_id(i),
                KEY,
                order_id(i),
                "f",
                amount(i),
                "CNY",
                "WECHATPAY",
                "app",
                "goods",
                0,
                "PAID",
                paid_at(plan, i),
            )
        for j in range(plan.k):  # closed, never paid: the statement says they were
            oid = f"ORD20260601C{j:09d}"
            yield (
                oid,
                KEY,
                oid,
                "f",
                5000 + j,
                "CNY",
                "WECHATPAY",
                "app",
                "goods",
                0,
                "CLOSED",
                None,
            )

    def refunds() -> Iterator[tuple[object, ...]]:
        for i in range(plan.refunds):
            rid = f"RFD20260601{i:010d}"
            yield (
                rid,
                order_id(i),
                rid,
                "f",
                refund_amount(i),
                [refund_amount(i)],
                "SUCCESS",
                START + timedelta(hours=23, microseconds=i),
            )

    await conn.copy_records_to_table(
        "orders",
        records=orders(),
        columns=(
            "order_id",
            "key_id",
            "order_no",
            "fingerprint",
            "amount",
            "currency",
            "channel",
            "app_id",
            "description",
            "platform_fee",
            "state",
            "paid_at",
        ),
    )
    await conn.copy_records_to_table(
        "order_refunds",
        records=refunds(),
        columns=(
            "refund_id",
            "order_id",
            "refund_no",
            "fingerprint",
            "amount",
            "allocation",
            "state",
            "finished_at",
        ),
    )
    await conn.execute("VACUUM ANALYZE orders")
    await conn.execute("VACUUM ANALYZE order_refunds")


REFUNDED_AT = START + timedelta(hours=23)
NOON = START + timedelta(hours=12)


def refund_amount(i: int) -> int:
    return max(1, amount(i) // 3)


def bill_rows(plan: Plan) -> Iterator[BillRow]:
    """What WeChat Pay's bill for the day holds, with the injected differences."""
    ppm = DEFAULT_CHANNEL_FEE_PPM
    k = plan.k
    seconds, per = SECONDS, len(SECONDS)

    def paid(ref: str, source_ref: str, fen: int, fee: int, at: datetime) -> BillRow:
        return BillRow(
            "PAYMENT",
            at,
            "wxbench",
            "1900000001",
            ref,
            source_ref,
            fen,
            "goods",
            "SUCCESS",
            fee_fen=fee,
        )

    for i in range(plan.payments):
        if i < k or 4 * k <= i < 4 * k + plan.carried:  # missing at the channel; carried
            continue
        fen = amount(i)
        fee = channel_fee(fen, ppm)
        if i < 2 * k:
            fen += 1  # amount mismatch
        elif i < 3 * k:
            fee += 1  # fee difference
        ref = order_id(i)
        row = paid(ref, "42" + ref, fen, fee, seconds[(i * per) // plan.payments])
        yield row
        if 3 * k <= i < 4 * k:  # reported twice
            yield row
    for i in range(plan.refunds):
        fen = refund_amount(i)
        ref = f"RFD20260601{i:010d}"
        yield BillRow(
            "REFUND",
            REFUNDED_AT,
            "wxbench",
            "1900000001",
            order_id(i),
            "42" + order_id(i),
            amount(i),
            "goods",
            "SUCCESS",
            out_refund_no=ref,
            refund_id="50" + ref,
            refund_fen=fen,
            fee_fen=channel_fee(fen, ppm),
        )
    for j in range(k):  # missing on the platform
        ref = f"ORD20260601G{j:09d}"
        yield paid(ref, "43" + ref, 900 + j, channel_fee(900 + j, ppm), NOON)
    for j in range(k):  # paid, says the channel; closed, says the platform
        ref = f"ORD20260601C{j:09d}"
        yield paid(ref, "44" + ref, 5000 + j, channel_fee(5000 + j, ppm), NOON)


def write_bill(plan: Plan, path: str, compress: bool) -> None:
    """In a child process: the simulator's writer holds the whole bill in memory."""
    data = wechatpay_bill(list(bill_rows(plan)))
    Path(path).write_bytes(gzip.compress(data, 6) if compress else data)


def written_bill(plan: Plan, path: Path, compress: bool) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=write_bill, args=(plan, str(path), compress)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit("writing the bill failed")


def client_cpu() -> float:
    """This process's CPU seconds (user + system): generating the lines, COPY's encoding."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in chunks_of(path):
        digest.update(chunk)
    return digest.hexdigest()


def chunks_of(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> dict[str, object]:
    base = Settings()
    name = f"fundhub_bench_recon_{uuid.uuid4().hex[:8]}"
    dsn = await create_scratch(base, name)
    try:
        await migrations.migrate(dsn)
        plan = Plan(args.payments, args.refunds, args.per_class, args.carried)
        conn = await asyncpg.connect(dsn)
        try:
            t = time.perf_counter()
            await write_platform(conn, plan)
        finally:
            await conn.close()
        bill = Path(tempfile.mkdtemp(prefix="recon_bench_")) / (
            "tradebill.csv.gz" if args.gzip else "tradebill.csv"
        )
        written_bill(plan, bill, args.gzip)
        bill_bytes = bill.stat().st_size
        setup_s = time.perf_counter() - t
        settings = Settings(database_url=dsn)
        pool = await db.connect_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                backend = await conn.fetchval("SELECT pg_backend_pid()")
            rss_before = peak_rss_mib()
            load_before = os.getloadavg()
            backend_cpu0, client_cpu0 = cpu_seconds(backend), client_cpu()
            t0 = time.perf_counter()
            if args.whole:  # as before streaming: the file read and parsed whole, then loaded
                data = bill.read_bytes()
                statement = await asyncio.to_thread(parse_wechatpay_bill, data, DAY, bill.name)
                taken = await take_statement(
                    pool,
                    statement,
                    name=bill.name,
                    sha256=sha256_of(data),
                    by="bench",
                    settings=settings,
                )
                del data, statement
            else:
                with bill.open("rb") as body:
                    taken = await take_stream(
                        pool,
                        Source.WECHATPAY,
                        DAY,
                        bill.name,
                        body,
                        sha256=file_sha256(bill),
                        by="bench",
                        settings=settings,
                    )
            t1 = time.perf_counter()
            load_after = os.getloadavg()
            backend_cpu = cpu_seconds(backend) - backend_cpu0
            bench_cpu = client_cpu() - client_cpu0
        finally:
            await pool.close()
            bill.unlink()
            bill.parent.rmdir()
        result = taken.run
        assert result is not None
        expected = plan.expected()
        wrong = {c: (result.counts[c], n) for c, n in expected.items() if result.counts[c] != n}
        figures: dict[str, object] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "platformRecords": plan.payments + plan.refunds,
            "statementLines": plan.lines(),
            "perClass": plan.k,
            "fileBytes": bill_bytes,
            "gzip": args.gzip,
            "whole": args.whole,
            "setupSeconds": round(setup_s, 1),
            "matchSeconds": round(sum(result.step_seconds.values()), 2),
            "totalSeconds": round(t1 - t0, 2),
            "clientCpuSeconds": round(bench_cpu, 2),
            "postgresBackendCpuSeconds": round(backend_cpu, 2),
            "peakRssMiB": round(peak_rss_mib(), 1),
            "peakRssBeforeRunMiB": round(rss_before, 1),
            "loadAverage1mBefore": round(load_before[0], 2),
            "loadAverage1mAfter": round(load_after[0], 2),
            "matchSteps": result.step_seconds,
            "counts": result.counts,
            "carriedOut": result.carried_out,
            "countsAsInjected": not wrong,
        }
        if wrong:
            figures["wrong"] = wrong
        return figures
    finally:
        admin = await asyncpg.connect(base.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payments", type=int, default=900_000)
    parser.add_argument("--refunds", type=int, default=100_000)
    parser.add_argument("--per-class", type=int, default=3_000)
    parser.add_argument(
        "--carried", type=int, default=100, help="paid at 23:59:59.9, billed next day"
    )
    parser.add_argument("--gzip", action="store_true", help="the bill gzip-compressed")
    parser.add_argument(
        "--whole", action="store_true", help="read and parse the file whole, then load (before)"
    )
    figures = asyncio.run(run(parser.parse_args()))
    print(json.dumps(figures, indent=2))
    if not figures["countsAsInjected"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
