"""How fast the statement parsers read a day's file: N lines of each format, written by the
simulators' own writers, then parsed (the best of a few runs, wall clock, one core).

    .venv/bin/python bench/statement_parse.py --lines 1000000

With ``--memory``, the peak memory of reading the Alipay zip and the bank's daily file instead:
each file written to disk, then read in a fresh process (spawned: none of this one's memory)
as the import reads it (streamed, lines counted and dropped) and, for contrast, whole (every
line held); that process's peak RSS, less its RSS before reading, for each size given.

    .venv/bin/python bench/statement_parse.py --memory --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import gc
import gzip
import multiprocessing
import random
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from fundhub.bank_simulator.daily_files import Posting, daily_file
from fundhub.channel_simulator.bills import BillRow, alipay_bill, wechatpay_bill
from fundhub.common.clock import BANK_TZ
from fundhub.reconciliation.alipay_bill import parse_alipay_bill, stream_alipay_bill
from fundhub.reconciliation.bank_file import parse_bank_file, stream_bank_file
from fundhub.reconciliation.intake import chunks_of
from fundhub.reconciliation.statement import Statement
from fundhub.reconciliation.wechatpay_bill import parse_wechatpay_bill

DAY = date(2026, 11, 30)


def channel_rows(count: int, rng: random.Random) -> list[BillRow]:
    start = datetime(2026, 11, 30, tzinfo=BANK_TZ)
    rows = []
    for n in range(count):
        at = start + timedelta(seconds=n * 86_000 // count)
        total = rng.randint(1, 500_000)
        refund = n % 10 == 9
        rows.append(
            BillRow(
                "REFUND" if refund else "PAYMENT",
                at,
                "wxapp0001",
                "1900000001",
                f"ORD{n:012d}",
                f"4200{n:024d}",
                total,
                "商品",
                "SUCCESS",
                out_refund_no=f"RF{n:012d}" if refund else "",
                refund_id=f"5030{n:024d}" if refund else "",
                refund_fen=rng.randint(1, total) if refund else 0,
                fee_fen=1 if refund else total * 6 // 1000,
            )
        )
    return rows


def bank_postings(count: int, rng: random.Random) -> list[Posting]:
    start = datetime(2026, 11, 30, tzinfo=BANK_TZ)
    return [
        Posting(
            start + timedelta(seconds=n * 86_000 // count),
            f"62220200{n % 5000:08d}",
            "C" if n % 4 else "D",
            rng.randint(1, 500_000),
            "TRANSFER_IN" if n % 4 else "PAYOUT",
            f"R{n:012d}",
            f"BT{n:018d}",
            "624615616476846548",
            "付款方",
        )
        for n in range(count)
    ]


def timed(name: str, data: bytes, parse: Callable[[bytes, date], Statement], runs: int) -> None:
    """The best of ``runs``: wall clock and this process's CPU time."""
    best_wall = best_cpu = float("inf")
    lines = 0
    for _ in range(runs):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        statement = parse(data, DAY)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        lines = len(statement.lines)
        del statement
    print(
        f"{name:28s} {lines:>9,} lines  {len(data) / 1e6:7.1f} MB  wall {best_wall:6.2f} s  "
        f"cpu {best_cpu:6.2f} s  {lines / best_cpu / 1e6:5.2f} M lines/cpu-s",
        flush=True,
    )


def rss_mib() -> float:
    """This process's peak RSS so far (``VmHWM``: unlike ``ru_maxrss``, not carried over the
    ``exec`` from the process that spawned this one)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def read_file(kind: str, path: str, whole: bool) -> tuple[int, float, float, float]:
    """In the spawned process: lines read, RSS before (MiB), peak RSS after (MiB), seconds."""
    gc.collect()
    before = current_rss_mib()
    started = time.perf_counter()
    count = 0
    with open(path, "rb") as body:
        if whole:
            parse = parse_alipay_bill if kind == "alipay" else parse_bank_file
            count = len(parse(body.read(), DAY).lines)
        else:
            stream = (
                stream_alipay_bill(body, DAY)
                if kind == "alipay"
                else stream_bank_file(chunks_of(body), DAY)
            )
            for _ in stream.lines:
                count += 1
            stream.ended()
    return count, before, rss_mib(), time.perf_counter() - started


def memory(sizes: list[int], modes: list[str]) -> None:
    spawn = multiprocessing.get_context("spawn")
    folder = Path(tempfile.mkdtemp(prefix="parse_memory_"))
    try:
        for size in sizes:
            rng = random.Random(11)
            rows = channel_rows(size, rng)
            files = {"alipay": alipay_bill(rows, "2088000000000001", DAY)[1]}
            del rows
            files["bank"] = daily_file(bank_postings(size, rng), "APP", DAY, datetime.now(BANK_TZ))
            for kind, data in files.items():
                path = folder / kind
                path.write_bytes(data)
                for whole in [mode == "whole" for mode in modes]:
                    with spawn.Pool(1) as pool:
                        lines, before, peak, took = pool.apply(read_file, (kind, str(path), whole))
                    print(
                        f"{kind:6s} {'whole' if whole else 'stream':6s} {lines:>9,} lines "
                        f"{len(data) / 2**20:7.1f} MiB file  peak RSS {peak:7.1f} MiB "
                        f"(+{peak - before:6.1f} over {before:5.1f} before)  {took:6.1f} s",
                        flush=True,
                    )
                path.unlink()
            del files
    finally:
        folder.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--modes", default="stream,whole", help="stream, whole or both")
    args = parser.parse_args()
    if args.memory:
        memory([int(size) for size in args.sizes.split(",")], args.modes.split(","))
        return
    rng = random.Random(11)
    rows = channel_rows(args.lines, rng)
    data = wechatpay_bill(rows)
    timed("wechatpay tradebill", data, parse_wechatpay_bill, args.runs)
    data = gzip.compress(data, 6)
    timed("wechatpay tradebill (gzip)", data, parse_wechatpay_bill, args.runs)
    data = alipay_bill(rows, "2088000000000001", DAY)[1]
    del rows
    timed("alipay bill zip", data, parse_alipay_bill, args.runs)
    data = daily_file(bank_postings(args.lines, rng), "APP", DAY, datetime.now(BANK_TZ))
    timed("bank daily file", data, parse_bank_file, args.runs)


if __name__ == "__main__":
    main()
