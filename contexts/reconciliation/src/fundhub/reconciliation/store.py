"""Statement files into Postgres: the file's row, its lines by COPY, its closing balances; the
reads of runs, discrepancies, balance checks and actions.

A file is imported in one transaction, under a lock on its source and day: the same bytes again
find their row and change nothing; other bytes for a day that has a file of the same merchant
(WeChat Pay 商户号, Alipay seller, bank app) supersede it (both kept); another merchant's file
for that day joins it. Lines stream from the parser to COPY as it reads them, so memory does
not grow with the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from fundhub.common.db import Connection
from fundhub.reconciliation.match_keys import line_key
from fundhub.reconciliation.outcomes import line_outcome
from fundhub.reconciliation.row_feed import threaded_rows
from fundhub.reconciliation.statement import (
    LineStream,
    Source,
    Statement,
    StatementLine,
    StatementRejected,
)

LINE_COLUMNS = (
    "file_id",
    "line_no",
    "kind",
    "reference",
    "source_ref",
    "amount_fen",
    "fee_fen",
    "status",
    "outcome",
    "occurred_at",
    "account",
    "balance_fen",
    "counterparty",
    "business",
    "match_ref",
)

# A day's million lines take tens of seconds on a loaded box: not the pool's per-request limit.
COPY_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Imported:
    file_id: int
    created: bool  # False: these very bytes were imported before; nothing changed
    superseded: int | None  # the file this one replaced


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def day_lock_key(source: Source, day: date) -> str:
    return f"recon:{source.value}:{day.isoformat()}"


async def lock_day(conn: Connection, source: Source, day: date) -> None:
    """Imports and runs of one source and day wait for each other (transaction-scoped)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", day_lock_key(source, day))


async def import_statement(
    conn: Connection,
    statement: Statement,
    *,
    name: str,
    sha256: str,
    imported_by: str,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    return await import_lines(
        conn,
        LineStream.of(statement, name),
        name=name,
        sha256=sha256,
        imported_by=imported_by,
        progress=progress,
    )


async def import_lines(
    conn: Connection,
    stream: LineStream,
    *,
    name: str,
    sha256: str,
    imported_by: str,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    """Inside the caller's transaction. The lines go to COPY as the parser reads them, the
    parse in a worker thread (the caller's event loop stays free, and Postgres consumes COPY on
    the other core meanwhile); the file's own totals are known, and checked, only at its end: a
    refusal there (or a count that differs) raises, and the caller's transaction rolls back."""
    source, day = stream.source, stream.day
    await lock_day(conn, source, day)
    existing = await conn.fetchval(
        "SELECT file_id FROM recon_files WHERE source = $1 AND day = $2 AND sha256 = $3",
        source.value,
        day,
        sha256,
    )
    if existing is not None:
        return Imported(file_id=existing, created=False, superseded=None)
    file_id: int = await conn.fetchval("SELECT nextval('recon_files_file_id_seq')")
    seen = _Tally()
    await conn.copy_records_to_table(
        "recon_lines",
        records=threaded_rows(_rows(file_id, source, stream.lines, seen), progress),
        columns=LINE_COLUMNS,
        timeout=COPY_TIMEOUT_S,
    )
    totals = stream.ended()
    if seen.count != totals.count:
        raise StatementRejected(
            name, 0, f"{seen.count} lines, while the file's totals count {totals.count}"
        )
    # Whose file it is is known once read: the current file of that merchant is superseded.
    superseded = await conn.fetchval(
        "UPDATE recon_files SET superseded_by = $4, superseded_at = now() "
        "WHERE source = $1 AND day = $2 AND merchant = $3 AND superseded_by IS NULL "
        "RETURNING file_id",
        source.value,
        day,
        stream.merchant,
        file_id,
    )
    await conn.execute(
        "INSERT INTO recon_files (file_id, source, day, merchant, sha256, name, line_count, "
        "amount_fen, refund_fen, fee_fen, lines_fen, imported_by) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        file_id,
        source.value,
        day,
        stream.merchant,
        sha256,
        name[:255],
        totals.count,
        totals.amount_fen,
        totals.refund_fen,
        totals.fee_fen,
        seen.amount,
        imported_by,
    )
    balances = [
        (file_id, b.line_no, b.account, b.balance_fen, b.currency) for b in stream.closing_balances
    ]
    if balances:
        await conn.copy_records_to_table(
            "recon_closing_balances",
            records=balances,
            columns=("file_id", "line_no", "account", "balance_fen", "currency"),
        )
    return Imported(file_id=file_id, created=True, superseded=superseded)


class _Tally:
    __slots__ = ("amount", "count")

    def __init__(self) -> None:
        self.count = 0
        self.amount = 0


def _rows(
    file_id: int,
    source: Source,
    lines: Iterable[StatementLine],
    tally: _Tally,
) -> Iterator[tuple[Any, ...]]:
    """The COPY rows, counted and summed on the way (a run derives its matched totals from
    these and the few rows that did not match)."""
    # A line's kind and status repeat: their outcome is looked up once per pair. The kind is a
    # StrEnum, a str: COPY takes it as is (``.value`` is a property call per line).
    outcomes: dict[tuple[str, str], str] = {}
    count = amount = 0
    for line in lines:
        kind, status, business = line.kind, line.status, line.business
        outcome = outcomes.get((kind, status))
        if outcome is None:
            outcome = outcomes[(kind, status)] = line_outcome(source, kind, status).value
        count += 1
        amount += line.amount_fen
        yield (
            file_id,
            line.line_no,
            kind,
            line.reference,
            line.source_ref,
            line.amount_fen,
            line.fee_fen,
            status,
            outcome,
            line.occurred_at,
            line.account,
            line.balance_fen,
            line.counterparty,
            business,
            line.reference if business is None else line_key(line),
        )
    tally.count, tally.amount = count, amount


# --- reads ---------------------------------------------------------------------------------

_RUN_COLUMNS = (
    "r.run_id, r.source, r.day, r.state, r.superseded_by, r.file_id, r.file_ids, f.name, "
    "f.sha256, "
    "r.counts, r.sums, r.line_count, r.record_count, r.carried_in, r.carried_out, "
    "r.unexplained, r.started_at, r.finished_at, r.run_by"
)


async def list_runs(
    conn: Connection, source: Source | None, day: date | None, limit: int = 100
) -> list[Any]:
    """Newest day first; every run, superseded ones too (they are the audit trail)."""
    return list(
        await conn.fetch(
            f"SELECT {_RUN_COLUMNS} FROM recon_runs r JOIN recon_files f USING (file_id) "
            "WHERE ($1::text IS NULL OR r.source = $1) AND ($2::date IS NULL OR r.day = $2) "
            "ORDER BY r.day DESC, r.source, r.started_at DESC LIMIT $3",
            None if source is None else source.value,
            day,
            limit,
        )
    )


async def get_run(conn: Connection, run_id: str) -> Any | None:
    return await conn.fetchrow(
        f"SELECT {_RUN_COLUMNS} FROM recon_runs r JOIN recon_files f USING (file_id) "
        "WHERE r.run_id = $1",
        run_id,
    )


async def balance_checks(conn: Connection, run_id: str) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM recon_balance_checks WHERE run_id = $1 ORDER BY account", run_id
        )
    )


async def list_discrepancies(
    conn: Connection,
    *,
    run_id: str | None,
    klass: str | None,
    state: str | None,
    after: str | None,
    limit: int,
) -> list[Any]:
    """By id (a run's are numbered in class order); ``after`` is the last id of the previous
    page. Without a run: the current runs' only."""
    return list(
        await conn.fetch(
            "SELECT d.* FROM recon_discrepancies d JOIN recon_runs r USING (run_id) "
            "WHERE (CASE WHEN $1::text IS NULL THEN r.state = 'CURRENT' ELSE d.run_id = $1 END) "
            "AND ($2::text IS NULL OR d.class = $2) AND ($3::text IS NULL OR d.state = $3) "
            "AND ($4::text IS NULL OR d.discrepancy_id > $4) "
            "ORDER BY d.discrepancy_id LIMIT $5",
            run_id,
            klass,
            state,
            after,
            limit,
        )
    )


async def get_discrepancy(conn: Connection, discrepancy_id: str) -> Any | None:
    return await conn.fetchrow(
        "SELECT * FROM recon_discrepancies WHERE discrepancy_id = $1", discrepancy_id
    )


async def actions_of(conn: Connection, discrepancy_id: str) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM recon_actions WHERE discrepancy_id = $1 ORDER BY action_id",
            discrepancy_id,
        )
    )
