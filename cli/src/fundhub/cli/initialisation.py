"""``fundhub init import``: data initialisation (资金导入), the platform's existing merchants and
their funds brought in before it goes live on the depository.

    fundhub init import merchants FILE --owner KEY_ID [--dry-run] [--json] [--concurrency N]
    fundhub init import balances FILE --owner KEY_ID [--dry-run] [--json]

The file formats and the rules are in ``fundhub.reconciliation.initialisation.files`` and the
README. A refused file prints every problem with its line and exits 1, having changed nothing;
a finished import prints its summary and exits 0, or 3 when some rows need an operator (a
conflict with what is held, a merchant the depository refused or did not confirm). The progress
bar is rich's (typer's own dependency, so nothing new to install; it draws on stderr and only
on a terminal, so ``--json`` output stays clean).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import asyncpg
import structlog
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fundhub.audit.store import append
from fundhub.bank_client.session import bank_session
from fundhub.cli.audit import operator_entry
from fundhub.cli.errors import CliError, UsageError
from fundhub.cli.settings import cli_settings
from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.db import Connection
from fundhub.merchants.depository_http import HttpDepository
from fundhub.reconciliation.initialisation import store
from fundhub.reconciliation.initialisation.files import FileRefused
from fundhub.reconciliation.initialisation.importer import (
    Audit,
    BalanceSummary,
    MerchantSummary,
    import_balances,
    import_merchants,
)

T = TypeVar("T")

EXIT_REFUSED = 1
EXIT_NEEDS_OPERATOR = 3
MAX_FILE_BYTES = 256 * 1024 * 1024

init_app = typer.Typer(
    help="Data initialisation: existing merchants and their funds.", no_args_is_help=True
)
import_app = typer.Typer(help="Import a merchants or balances file.", no_args_is_help=True)
init_app.add_typer(import_app, name="import")

_FILE = typer.Argument(help="The CSV file (UTF-8, header, rows, TRAILER line).")
_OWNER = typer.Option("--owner", help="The API key (tenant) the merchants belong to.")
_DRY_RUN = typer.Option("--dry-run", help="Validate and plan; change nothing.")
_JSON = typer.Option("--json", help="Print the summary (or the refusal) as JSON.")


class BarProgress:
    """The importer's progress on a rich bar (stderr, terminals only)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._task: TaskID | None = None

    def start(self, label: str, total: int) -> None:
        """A bar per phase; the finished ones stay on screen."""
        if self._task is None:
            self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self, done: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, done)

    def finish(self) -> None:
        if self._task is not None:
            self._progress.refresh()

    def close(self) -> None:
        self._progress.stop()


@contextmanager
def _bar() -> Iterator[BarProgress]:
    bar = BarProgress(Console(stderr=True))
    try:
        yield bar
    finally:
        bar.close()


def _quiet_logs() -> None:
    """Warnings (a retried bank call) on stderr; stdout is the summary's (``--json``)."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


def _settings() -> Settings:
    _quiet_logs()
    return cli_settings()


def _read(path: Path) -> bytes:
    """The file, bounded before it is read; a usage error ends the command."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            message = f"{path}: over {MAX_FILE_BYTES // (1024 * 1024)} MiB; split the file"
        else:
            return path.read_bytes()
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(UsageError(message).exit_code)


def _audit(command: str, started: float) -> Audit:
    async def write(conn: Connection, params: dict[str, Any]) -> None:
        await append(conn, [operator_entry(command, params, started)])

    return write


def _run(coro: Coroutine[Any, Any, T], as_json: bool) -> T:
    try:
        return asyncio.run(coro)
    except FileRefused as refused:
        _refusal(refused, as_json)
        raise typer.Exit(EXIT_REFUSED) from None
    except store.ImportRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except CliError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # What was committed stays (an import is finished by running it again): say so.
        typer.echo(
            f"error: the import stopped ({type(exc).__name__}: {exc}); run the same file again"
            " to finish it",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED) from None


def _refusal(refused: FileRefused, as_json: bool) -> None:
    if as_json:
        body = {
            "refused": True,
            "problemCount": refused.count,
            "problems": [p.to_json() for p in refused.problems],
        }
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"refused: {refused.count} problem(s); nothing was imported", err=True)
    for problem in refused.problems:
        typer.echo(f"  {problem}", err=True)
    if refused.count > len(refused.problems):
        typer.echo(f"  … and {refused.count - len(refused.problems)} more", err=True)


async def _pool(settings: Settings, owner: str) -> db.Pool:
    try:
        pool = await db.connect_pool(settings.database_url, min_size=1, max_size=4)
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot reach PostgreSQL ({type(exc).__name__})") from None
    async with pool.acquire() as conn:
        known = await store.owner_exists(conn, owner)
    if not known:
        await pool.close()
        raise UsageError(f"--owner {owner}: no such API key (or it is revoked)")
    return pool


class _Summary(Protocol):
    @property
    def complete(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=_Summary)
_Work = Callable[[Settings, db.Pool, bytes, BarProgress, Audit], Awaitable[S]]


def _import(
    command: str,
    file: Path,
    owner: str,
    as_json: bool,
    work: _Work[S],
    show: Callable[[S], None],
) -> None:
    """Either import's course: the file read before anything starts, ``work`` run on the
    owner's pool with the bar and the command's audit, its summary printed (JSON, or ``show``);
    exit 3 when some rows need an operator."""
    settings = _settings()
    data = _read(file)
    started = time.perf_counter()

    async def main(bar: BarProgress) -> S:
        pool = await _pool(settings, owner)
        try:
            return await work(settings, pool, data, bar, _audit(command, started))
        finally:
            await pool.close()

    with _bar() as bar:
        summary = _run(main(bar), as_json)
    if as_json:
        typer.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        show(summary)
    if not summary.complete:
        raise typer.Exit(EXIT_NEEDS_OPERATOR)


@import_app.command("merchants")
def merchants(
    file: Annotated[Path, _FILE],
    owner: Annotated[str, _OWNER],
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, _JSON] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Depository requests at once.")
    ] = 32,
) -> None:
    """Bring in existing merchants, registered with the depository as existing accounts."""

    async def work(
        settings: Settings, pool: db.Pool, data: bytes, bar: BarProgress, audit: Audit
    ) -> MerchantSummary:
        session = bank_session(settings)
        try:
            depository = HttpDepository(
                session, settings.bank_base_url, timeout_s=settings.bank_timeout_s
            )
            return await import_merchants(
                pool,
                depository,
                owner_key_id=owner,
                data=data,
                file_name=file.name,
                notify_url=settings.bank_callback_url(),
                bank_app_id=settings.bank_app_id,
                dry_run=dry_run,
                concurrency=concurrency,
                progress=bar,
                audit=audit,
            )
        finally:
            await session.close()

    _import("init import merchants", file, owner, as_json, work, _print_merchants)


@import_app.command("balances")
def balances(
    file: Annotated[Path, _FILE],
    owner: Annotated[str, _OWNER],
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Book existing merchants' opening balances against the opening-balance equity account."""

    async def work(
        settings: Settings, pool: db.Pool, data: bytes, bar: BarProgress, audit: Audit
    ) -> BalanceSummary:
        return await import_balances(
            pool,
            owner_key_id=owner,
            data=data,
            file_name=file.name,
            dry_run=dry_run,
            progress=bar,
            audit=audit,
        )

    _import("init import balances", file, owner, as_json, work, _print_balances)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _print_merchants(summary: MerchantSummary) -> None:
    verb = "would create" if summary.dry_run else "created"
    lines = [
        f"{summary.file} ({summary.rows} rows, sha256 {summary.sha256[:16]}…)"
        + (" — dry run, nothing changed" if summary.dry_run else ""),
        f"  {verb}: {summary.created}   unchanged: {summary.unchanged}"
        f"   registration resumed: {summary.resumed}   conflicts: {len(summary.conflicts)}",
    ]
    if not summary.dry_run:
        lines.append(
            f"  registered with the depository: {summary.registered}"
            f"   refused: {len(summary.rejected)}   awaiting the bank: {summary.awaiting_bank}"
            f"   unanswered: {len(summary.unanswered)}"
        )
    lines += [f"  conflict line {c.line} {c.merchant_no}: {c.message}" for c in summary.conflicts]
    lines += [f"  refused line {r.line} {r.merchant_no}: {r.message}" for r in summary.rejected]
    lines += [f"  unanswered line {u.line} {u.merchant_no}" for u in summary.unanswered]
    lines.append(f"  in {summary.seconds:.1f} s")
    typer.echo("\n".join(lines))


def _print_balances(summary: BalanceSummary) -> None:
    verb = "would book" if summary.dry_run else "booked"
    lines = [
        f"{summary.file} ({summary.rows} rows, {_yuan(summary.amount_fen)} yuan, sha256 "
        f"{summary.sha256[:16]}…)" + (" — dry run, nothing changed" if summary.dry_run else ""),
        f"  {verb}: {summary.booked} ({_yuan(summary.booked_fen)} yuan against "
        f"{summary.equity_account})   unchanged: {summary.unchanged}"
        f"   conflicts: {len(summary.conflicts)}",
    ]
    lines += [f"  conflict line {c.line} {c.merchant_no}: {c.message}" for c in summary.conflicts]
    lines.append(f"  in {summary.seconds:.1f} s")
    typer.echo("\n".join(lines))
