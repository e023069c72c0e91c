"""Export of old months to compressed files, then their partitions dropped.

A month is written to ``audit-YYYY-MM.jsonl.gz`` (one line per entry: seq, hash, the hashed
entry), flushed to disk, and only then recorded in ``audit_archives`` (with its last sequence
number and hash, where the chain in the database now starts) and dropped, in one transaction.
A crash before the commit leaves the month in place, to be archived again."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

from fundhub.common.db import Connection

Progress = Callable[[str, int], None]  # (month, rows written so far)


@dataclass(frozen=True)
class Archived:
    month: str  # YYYY-MM
    rows: int
    file: str
    sha256: str


def parse_month(text: str) -> date:
    """``YYYY-MM`` -> its first day; ValueError otherwise."""
    year, sep, month = text.partition("-")
    if not (sep and len(year) == 4 and len(month) == 2 and year.isdigit() and month.isdigit()):
        raise ValueError(f"not a month (YYYY-MM): {text!r}")
    return date(int(year), int(month), 1)


def months_back(today: date, months: int) -> date:
    """The first day of the month ``months`` before ``today``'s."""
    index = today.year * 12 + (today.month - 1) - months
    return date(index // 12, index % 12 + 1, 1)


async def partitions_before(conn: Connection, before: date) -> list[date]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'audit_log'::regclass ORDER BY c.relname"
    )
    months = [date(int(r["relname"][-6:-2]), int(r["relname"][-2:]), 1) for r in rows]
    return [m for m in months if m < before]


async def archive_month(
    conn: Connection, month: date, directory: Path, progress: Progress | None = None
) -> Archived:
    label = month.strftime("%Y-%m")
    table = "audit_log_" + month.strftime("%Y%m")
    # An operator command with its own loop: blocking file I/O holds up nothing else.
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    path = directory / f"audit-{label}.jsonl.gz"
    partial = path.with_suffix(".gz.partial")
    rows = 0
    first_seq: int | None = None
    last: tuple[int, bytes] | None = None
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        with gzip.open(partial, "wb") as out:
            async for r in conn.cursor(
                f"SELECT seq, hash, body FROM {table} ORDER BY seq", prefetch=2000
            ):
                out.write(
                    orjson.dumps(
                        {
                            "seq": r["seq"],
                            "hash": bytes(r["hash"]).hex(),
                            "entry": orjson.loads(r["body"]),
                        }
                    )
                    + b"\n"
                )
                first_seq = r["seq"] if first_seq is None else first_seq
                last = (int(r["seq"]), bytes(r["hash"]))
                rows += 1
                if progress is not None and rows % 1000 == 0:
                    progress(label, rows)
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        partial.replace(path)
        await conn.execute(
            "INSERT INTO audit_archives (month, rows, first_seq, last_seq, last_hash, file, sha256)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            month,
            rows,
            first_seq,
            last[0] if last else None,
            last[1] if last else None,
            str(path),
            digest,
        )
        await conn.execute(f"DROP TABLE {table}")
    if progress is not None:
        progress(label, rows)
    return Archived(label, rows, str(path), digest)
