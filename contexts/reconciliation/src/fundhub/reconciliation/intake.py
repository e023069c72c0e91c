"""A statement file in: parsed strictly by its source's reader as its bytes are read, its lines
loaded by COPY while the parse goes on, and the day's run (re)done, in one transaction. The one
use case behind ``fundhub recon import``, the upload endpoint and the reconciler's daily fetch.

The same bytes again change nothing (and run nothing); other bytes for a day supersede the file
and redo the run. A file refused anywhere, its last line included, changes nothing: the
transaction that held its first lines rolls back. Parsing happens in a worker thread: a large
file does not stall the caller's event loop.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import IO

from fundhub.common.config import Settings
from fundhub.common.db import Connection, Pool
from fundhub.reconciliation.alipay_bill import stream_alipay_bill
from fundhub.reconciliation.bank_file import stream_bank_file
from fundhub.reconciliation.matching import RunPolicy, RunResult, reconcile
from fundhub.reconciliation.statement import LineStream, Source, Statement, StatementRejected
from fundhub.reconciliation.store import Imported, import_lines, sha256_of
from fundhub.reconciliation.wechatpay_bill import stream_wechatpay_bill

CHUNK_BYTES = 1 << 20


def chunks_of(body: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    while chunk := body.read(size):
        yield chunk


def _alipay(body: IO[bytes], day: date, file: str) -> LineStream:
    return stream_alipay_bill(body, day, file)  # a zip: read where its directory says


def _wechatpay(body: IO[bytes], day: date, file: str) -> LineStream:
    return stream_wechatpay_bill(chunks_of(body), day, file)


def _bank(body: IO[bytes], day: date, file: str) -> LineStream:
    return stream_bank_file(chunks_of(body), day, file)


# Each source's reader of a file as it is read (in the worker thread that feeds COPY): memory
# stays that of a few chunks and lines, whatever the file's size.
STREAMERS: dict[Source, Callable[[IO[bytes], date, str], LineStream]] = {
    Source.WECHATPAY: _wechatpay,
    Source.ALIPAY: _alipay,
    Source.BANK: _bank,
}


@dataclass(frozen=True, slots=True)
class Intake:
    imported: Imported
    run: RunResult | None  # None: the file was known, nothing ran


def policy_of(settings: Settings) -> RunPolicy:
    return RunPolicy(
        fee_ppm={
            Source.WECHATPAY: settings.recon_wechatpay_fee_ppm,
            Source.ALIPAY: settings.recon_alipay_fee_ppm,
        },
        carry_window=timedelta(seconds=settings.recon_carry_window_s),
    )


async def take_file(
    pool: Pool,
    source: Source,
    day: date,
    name: str,
    data: bytes,
    *,
    by: str,
    settings: Settings,
) -> Intake:
    if len(data) > settings.recon_max_file_bytes:
        raise StatementRejected(name, 0, f"larger than {settings.recon_max_file_bytes} bytes")
    return await take_stream(
        pool, source, day, name, io.BytesIO(data), sha256=sha256_of(data), by=by, settings=settings
    )


async def take_stream(
    pool: Pool,
    source: Source,
    day: date,
    name: str,
    body: IO[bytes],
    *,
    sha256: str,
    by: str,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    also: Callable[[Connection], Awaitable[None]] | None = None,
) -> Intake:
    """The file (``body``: binary, seekable, at its start; read in the worker thread) parsed
    as it is read and loaded by COPY meanwhile; ``sha256`` is the whole file's (known before:
    the same bytes again are found before anything is read)."""
    stream = STREAMERS[source](body, day, name)
    return await _take(pool, stream, source, day, name, sha256, by, settings, progress, also)


async def take_statement(
    pool: Pool,
    statement: Statement,
    *,
    name: str,
    sha256: str,
    by: str,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    also: Callable[[Connection], Awaitable[None]] | None = None,
) -> Intake:
    """A statement read whole, imported and run (small files, tests)."""
    stream = LineStream.of(statement, name)
    return await _take(
        pool, stream, statement.source, statement.day, name, sha256, by, settings, progress, also
    )


async def _take(
    pool: Pool,
    stream: LineStream,
    source: Source,
    day: date,
    name: str,
    sha256: str,
    by: str,
    settings: Settings,
    progress: Callable[[int], None] | None,
    also: Callable[[Connection], Awaitable[None]] | None,
) -> Intake:
    """Import and run in one transaction; ``also`` joins it (the CLI's audit entry)."""
    async with pool.acquire() as conn, conn.transaction():
        imported = await import_lines(
            conn, stream, name=name, sha256=sha256, imported_by=by, progress=progress
        )
        run = None
        if imported.created:
            run = await reconcile(conn, source, day, run_by=by, policy=policy_of(settings))
        if also is not None:
            await also(conn)
    return Intake(imported, run)


async def rerun(pool: Pool, source: Source, day: date, *, by: str, settings: Settings) -> RunResult:
    """Redo the day's run on its current file (records changed since, or a hand-over came)."""
    async with pool.acquire() as conn, conn.transaction():
        return await reconcile(conn, source, day, run_by=by, policy=policy_of(settings))
