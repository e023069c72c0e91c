"""``fundhub recon``: statements in, runs and discrepancies read, actions taken.

    fundhub recon import --source wechatpay|alipay|bank --date YYYY-MM-DD FILE [--json]
    fundhub recon rerun --source S --date D [--json]
    fundhub recon runs [--source S] [--date D] [--json]
    fundhub recon show RUN_ID [--json]
    fundhub recon discrepancies [--run RUN_ID] [--class C] [--state S] [--limit N] [--json]
    fundhub recon resolve ID --account A --amount FEN --reason R [--json]   (propose)
    fundhub recon resolve ID --approve [--reason R] [--json]               (another operator)
    fundhub recon carry-over ID [--reason R] / write-off ID --reason R / reopen ID --reason R
    fundhub recon report RUN_ID [--format csv|html] [--out FILE]

The operator is ``FUNDHUB_OPERATOR``, else the login name: the one who approves an adjustment
must not be the one who proposed it. Every command that changes something leaves an audit
entry in its own transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fundhub.audit.store import append
from fundhub.cli.audit import audited, operator_entry, operator_name
from fundhub.cli.database import connection
from fundhub.cli.errors import CliError, UsageError
from fundhub.cli.settings import cli_settings
from fundhub.cli.tables import render_table
from fundhub.common import db
from fundhub.common.db import Connection
from fundhub.reconciliation import store, wire
from fundhub.reconciliation.actions import AdjustmentRefused, DiscrepancyNotFound, act
from fundhub.reconciliation.classes import MatchClass, by_wire
from fundhub.reconciliation.discrepancy_states import (
    Action,
    ActionRefused,
    Adjustment,
    State,
)
from fundhub.reconciliation.intake import rerun, take_stream
from fundhub.reconciliation.matching import NoStatement
from fundhub.reconciliation.report import csv_report, html_report
from fundhub.reconciliation.statement import Source, StatementRejected

T = TypeVar("T")

recon_app = typer.Typer(
    help="Reconciliation: statements in, runs, discrepancies and their actions.",
    no_args_is_help=True,
)
_JSON = typer.Option("--json", help="Print JSON.")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except CliError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None


def _in_database(work: Callable[[Connection], Awaitable[T]]) -> T:
    settings = cli_settings()

    async def main() -> T:
        async with connection(settings.database_url) as conn:
            try:
                return await work(conn)
            except (NoStatement, DiscrepancyNotFound) as exc:
                raise CliError(str(exc) or type(exc).__name__) from None
            except ActionRefused as exc:
                raise UsageError(str(exc)) from None
            except AdjustmentRefused as exc:
                raise CliError(f"the ledger refuses the adjustment: {exc}") from None

    return _run(main())


def _source(text: str) -> Source:
    try:
        return Source(text)
    except ValueError:
        raise typer.BadParameter("one of wechatpay, alipay, bank") from None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("YYYY-MM-DD") from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


def _counts_table(run: dict[str, Any]) -> str:
    rows = [[c.wire, str(run["counts"][c.wire]), str(run["sums"][c.wire])] for c in MatchClass]
    return render_table(["class", "count", "sum (fen)"], rows, {1, 2})


@recon_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option("--source", help="wechatpay, alipay or bank")],
    day: Annotated[str, typer.Option("--date", help="The business day it reports, YYYY-MM-DD")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Import a statement file and reconcile its day; the same file again changes nothing."""
    settings = cli_settings()
    wanted, on = _source(source), _day(day)
    size = file.stat().st_size
    if size > settings.recon_max_file_bytes:
        raise typer.BadParameter(f"larger than {settings.recon_max_file_bytes} bytes")
    sha256 = _file_sha256(file)
    started = time.perf_counter()
    params = {"source": wanted.value, "date": on.isoformat(), "file": file.name, "bytes": size}
    lines = [0]

    async def main() -> Any:
        pool = await db.connect_pool(settings.database_url, max_size=2)
        try:
            with (
                file.open("rb") as handle,
                typer.progressbar(length=size, label="loading", file=sys.stderr) as bar,
            ):
                done = [0]

                def progress(count: int) -> None:
                    lines[0] = count
                    read = handle.tell()  # where the parse stands (a zip's reads jump about)
                    if read > done[0]:
                        bar.update(read - done[0])
                        done[0] = read

                async def audit(conn: Connection) -> None:
                    await append(conn, [operator_entry("recon import", params, started)])

                return await take_stream(
                    pool,
                    wanted,
                    on,
                    file.name,
                    handle,
                    sha256=sha256,
                    by=operator_name(),
                    settings=settings,
                    progress=progress,
                    also=audit,
                )
        finally:
            await pool.close()

    try:
        taken = _run(main())
    except StatementRejected as exc:
        typer.echo(f"error: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    out = {
        "fileId": taken.imported.file_id,
        "created": taken.imported.created,
        "supersededFileId": taken.imported.superseded,
        "lines": lines[0],
        "run": None,
        "redoneOnward": [],
    }
    if taken.run is not None:
        run_id = taken.run.run_id
        out["run"] = _in_database(lambda conn: _run_body(conn, run_id))
        out["redoneOnward"] = list(taken.run.redone_onward)
    if as_json:
        _echo_json(out)
        return
    if not taken.imported.created:
        typer.echo(f"{file.name}: imported before (file {taken.imported.file_id}); nothing changed")
        return
    run = out["run"]
    assert isinstance(run, dict)
    superseded = taken.imported.superseded
    typer.echo(
        f"{file.name}: {lines[0]} lines, file {taken.imported.file_id}"
        + (f" (supersedes file {superseded})" if superseded else "")
        + f"; run {run['runId']}"
    )
    typer.echo(_counts_table(run))
    _say_redone_onward(list(taken.run.redone_onward) if taken.run is not None else [])


def _say_redone_onward(run_ids: list[str]) -> None:
    """The following days' runs redone because this one changed what it hands over."""
    if run_ids:
        typer.echo("what it hands to the next day changed; redone: " + ", ".join(run_ids))


def _file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _run_body(conn: Connection, run_id: str) -> dict[str, Any]:
    row = await store.get_run(conn, run_id)
    if row is None:
        raise CliError(f"no run {run_id}")
    body = wire.run_body(row)
    body["balances"] = [wire.balance_body(c) for c in await store.balance_checks(conn, run_id)]
    return body


@recon_app.command("rerun")
def rerun_day(
    source: Annotated[str, typer.Option("--source")],
    day: Annotated[str, typer.Option("--date")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Redo a day's run on its current file (the previous run is kept, superseded)."""
    settings = cli_settings()
    wanted, on = _source(source), _day(day)

    async def main() -> dict[str, Any]:
        pool = await db.connect_pool(settings.database_url, max_size=2)
        try:
            try:
                result = await rerun(pool, wanted, on, by=operator_name(), settings=settings)
            except NoStatement as exc:
                raise CliError(str(exc)) from None
            async with pool.acquire() as conn:
                await append(
                    conn,
                    [
                        operator_entry(
                            "recon rerun", {"source": source, "date": day}, time.perf_counter()
                        )
                    ],
                )
                body = await _run_body(conn, result.run_id)
                return {**body, "redoneOnward": list(result.redone_onward)}
        finally:
            await pool.close()

    body = _run(main())
    if as_json:
        _echo_json(body)
    else:
        typer.echo(f"run {body['runId']}")
        typer.echo(_counts_table(body))
        _say_redone_onward(list(body["redoneOnward"]))


@recon_app.command("runs")
def list_runs(
    source: Annotated[str | None, typer.Option("--source")] = None,
    day: Annotated[str | None, typer.Option("--date")] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Runs by source and day, newest first (superseded ones too)."""
    wanted = None if source is None else _source(source)
    on = None if day is None else _day(day)

    async def work(conn: Connection) -> list[dict[str, Any]]:
        return [wire.run_body(r) for r in await store.list_runs(conn, wanted, on, 500)]

    runs = _in_database(work)
    if as_json:
        _echo_json(runs)
        return
    rows = [
        [
            r["runId"],
            r["source"],
            r["date"],
            r["state"],
            str(r["counts"]["matched"]),
            str(sum(n for c, n in r["counts"].items() if c != "matched")),
            str(r["unexplainedBalances"]),
        ]
        for r in runs
    ]
    typer.echo(
        render_table(
            ["run", "source", "date", "state", "matched", "discrepancies", "unexplained"],
            rows,
            {4, 5, 6},
        )
    )


@recon_app.command("show")
def show(run_id: str, as_json: Annotated[bool, _JSON] = False) -> None:
    """A run: counts and sums per class, and the bank's balance checks."""
    body = _in_database(lambda conn: _run_body(conn, run_id))
    if as_json:
        _echo_json(body)
        return
    typer.echo(
        f"run {body['runId']}  {body['source']} {body['date']}  {body['state']}  "
        f"file {body['fileName']} ({body['lineCount']} lines)  records {body['recordCount']}  "
        f"carried in {body['carriedIn']}, out {body['carriedOut']}"
    )
    typer.echo(_counts_table(body))
    if body["balances"]:
        rows = [
            [b["account"], str(b["ledgerFen"]), str(b["bankFen"]), str(b["difference"]),
             str(b["explainedFen"]), b["state"]]
            for b in body["balances"]
        ]  # fmt: skip
        typer.echo(
            render_table(
                ["account", "ledger", "bank", "difference", "explained", "state"],
                rows,
                {1, 2, 3, 4},
            )
        )


@recon_app.command("discrepancies")
def discrepancies(
    run_id: Annotated[str | None, typer.Option("--run")] = None,
    klass: Annotated[str | None, typer.Option("--class", help="e.g. amountMismatch")] = None,
    state: Annotated[str | None, typer.Option("--state", help="e.g. OPEN")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 1000,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Discrepancies of a run (or of the current runs), by class and state."""
    try:
        wanted_class = None if klass is None else by_wire(klass).value
        wanted_state = None if state is None else State(state).value
    except (KeyError, ValueError):
        raise typer.BadParameter("unknown class or state") from None

    async def work(conn: Connection) -> list[dict[str, Any]]:
        rows = await store.list_discrepancies(
            conn, run_id=run_id, klass=wanted_class, state=wanted_state, after=None, limit=limit
        )
        return [wire.discrepancy_body(r) for r in rows]

    found = _in_database(work)
    if as_json:
        _echo_json(found)
        return
    rows = [
        [d["discrepancyId"], d["class"], d["state"], d["kind"], d["reference"],
         str(d["statementFen"]), str(d["platformFen"]), d["account"] or ""]
        for d in found
    ]  # fmt: skip
    typer.echo(
        render_table(
            ["id", "class", "state", "kind", "reference", "statement", "platform", "account"],
            rows,
            {5, 6},
        )
    )


def _act(
    discrepancy_id: str,
    action: Action,
    reason: str,
    adjustment: Adjustment | None,
    as_json: bool,
) -> None:
    params: dict[str, Any] = {"discrepancy": discrepancy_id, "action": action.value}
    if adjustment is not None:
        params["adjustment"] = {"account": adjustment.account_id, "fen": adjustment.amount_fen}

    async def work(conn: Connection) -> dict[str, Any]:
        await audited(
            f"recon {action.value.lower()}",
            params,
            lambda c: act(
                c, discrepancy_id, action, actor=operator_name(), reason=reason,
                adjustment=adjustment,
            ),
        )(conn)  # fmt: skip
        row = await store.get_discrepancy(conn, discrepancy_id)
        assert row is not None
        body = wire.discrepancy_body(row)
        body["actions"] = [
            wire.action_body(a) for a in await store.actions_of(conn, discrepancy_id)
        ]
        return body

    body = _in_database(work)
    if as_json:
        _echo_json(body)
    else:
        typer.echo(f"{discrepancy_id}: {body['state']}")


@recon_app.command("resolve")
def resolve(
    discrepancy_id: str,
    account: Annotated[str | None, typer.Option("--account", help="The ledger account")] = None,
    amount: Annotated[
        int | None, typer.Option("--amount", help="Fen, signed: + credits the account")
    ] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve another's proposal")] = False,
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Propose a balanced adjustment (--account, --amount), or approve one (--approve)."""
    if approve == (account is not None or amount is not None):
        raise typer.BadParameter("either --approve, or --account and --amount")
    if approve:
        _act(discrepancy_id, Action.APPROVE, reason, None, as_json)
        return
    if account is None or amount is None:
        raise typer.BadParameter("--account and --amount go together")
    try:
        adjustment = Adjustment(account, amount)
    except ActionRefused as exc:
        raise typer.BadParameter(str(exc)) from None
    _act(discrepancy_id, Action.PROPOSE, reason, adjustment, as_json)


@recon_app.command("carry-over")
def carry_over(
    discrepancy_id: str,
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Look at it again later."""
    _act(discrepancy_id, Action.CARRY_OVER, reason, None, as_json)


@recon_app.command("write-off")
def write_off(
    discrepancy_id: str,
    reason: Annotated[str, typer.Option("--reason")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Close it without an adjustment, saying why."""
    _act(discrepancy_id, Action.WRITE_OFF, reason, None, as_json)


@recon_app.command("reopen")
def reopen(
    discrepancy_id: str,
    reason: Annotated[str, typer.Option("--reason")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Withdraw a proposal, or undo a carry-over or write-off."""
    _act(discrepancy_id, Action.REOPEN, reason, None, as_json)


@recon_app.command("report")
def report(
    run_id: str,
    fmt: Annotated[str, typer.Option("--format", help="csv or html")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (else stdout)")] = None,
) -> None:
    """The run's daily report: CSV, or an HTML page."""
    if fmt not in ("csv", "html"):
        raise typer.BadParameter("csv or html")

    async def work(conn: Connection) -> str:
        run = await _run_body(conn, run_id)
        rows = await store.list_discrepancies(
            conn, run_id=run_id, klass=None, state=None, after=None, limit=1_000_000
        )
        found = [wire.discrepancy_body(r) for r in rows]
        if fmt == "html":
            return html_report(run, found, run["balances"])
        return csv_report(run, found)

    text = _in_database(work)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{out}")
