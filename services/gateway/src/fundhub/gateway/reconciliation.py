"""Reconciliation's routes: the runs of each source and day with their counts and sums per
class, the discrepancies with both sides' evidence, the actions on them, the daily report (CSV
or HTML), and the upload of a statement file.

Reconciliation is the platform's own business, across every tenant's money: only a key given
every account (``*``) may use these routes, with ``reconciliation:read`` to read and
``reconciliation:write`` to act or upload. The key is the operator: an adjustment proposed
under one key is approved under another.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fundhub.access.keys import ALL_ACCOUNTS, SCOPE_RECON_READ, SCOPE_RECON_WRITE, ApiKey
from fundhub.common.config import Settings
from fundhub.common.db import json_value
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import signed, success
from fundhub.gateway.schemas import (
    ReconDiscrepancies,
    ReconDiscrepancy,
    ReconIntake,
    ReconRun,
    ReconRuns,
    answers,
    request_body,
)
from fundhub.gateway.spool import spooled_body
from fundhub.reconciliation import store, wire
from fundhub.reconciliation.actions import AdjustmentRefused, DiscrepancyNotFound, act
from fundhub.reconciliation.classes import by_wire
from fundhub.reconciliation.discrepancy_states import (
    Action,
    Adjustment,
    InvalidAction,
    OwnApproval,
    State,
    StateConflict,
)
from fundhub.reconciliation.intake import take_stream
from fundhub.reconciliation.matching import NoStatement
from fundhub.reconciliation.report import csv_report, html_report
from fundhub.reconciliation.statement import Source, StatementRejected, StatementTooLarge

PREFIX = "/v1/reconciliation"
RUN_ID = re.compile(r"^RCN[0-9]{8}[A-Z][0-9a-f]{10}$")
DISCREPANCY_ID = re.compile(r"^RCN[0-9]{8}[A-Z][0-9a-f]{10}-[0-9]{7}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# The edge spools an upload to a temporary file (not memory), refusing it past this while it
# reads; larger files go through `fundhub recon import` or the daily fetch.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# What an upload may be sent as: the raw file (a zip, a gzip, a CSV or text file).
UPLOAD_MEDIA_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "text/csv",
        "text/plain",
    }
)
MAX_ACTION_BODY_BYTES = 2048
REPORT_ROWS = 100_000
ACTIONS = {
    "propose": Action.PROPOSE,
    "approve": Action.APPROVE,
    "carryOver": Action.CARRY_OVER,
    "writeOff": Action.WRITE_OFF,
    "reopen": Action.REOPEN,
}


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, validate_by_alias=True
    )
    account_id: Annotated[str, Field(min_length=1, max_length=64)]
    amount_fen: Annotated[int, Field(description="signed: + credits the account")]


class ActionIn(BaseModel):
    """``POST …/discrepancies/{id}/actions``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, validate_by_alias=True
    )
    action: Literal["propose", "approve", "carryOver", "writeOff", "reopen"]
    reason: Annotated[str, Field(max_length=500)] = ""
    adjustment: AdjustmentIn | None = None


def _operator(key: ApiKey) -> ApiKey:
    if ALL_ACCOUNTS not in key.accounts:
        raise FundhubError(
            ErrorCode.ACCOUNT_FORBIDDEN, "reconciliation needs a key given every account"
        )
    return key


async def _reader(request: Request) -> ApiKey:
    return _operator(await authenticated(request, SCOPE_RECON_READ))


async def _writer(request: Request) -> ApiKey:
    return _operator(await authenticated(request, SCOPE_RECON_WRITE))


def _source(text: str | None) -> Source | None:
    if text is None:
        return None
    try:
        return Source(text)
    except ValueError:
        raise FundhubError(
            ErrorCode.INVALID_PARAMETER, "source: one of wechatpay, alipay, bank"
        ) from None


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        pass
    raise FundhubError(ErrorCode.INVALID_PARAMETER, "date: YYYY-MM-DD")


async def _run_or_404(request: Request, run_id: str) -> dict[str, Any]:
    row = None
    if RUN_ID.fullmatch(run_id):
        async with request.app.state.pool.acquire() as conn:
            row = await store.get_run(conn, run_id)
    if row is None:
        raise FundhubError(ErrorCode.NOT_FOUND, "no such run")
    return wire.run_body(row)


async def _discrepancy_body(request: Request, discrepancy_id: str) -> dict[str, Any]:
    row = None
    if DISCREPANCY_ID.fullmatch(discrepancy_id):
        async with request.app.state.pool.acquire() as conn:
            row = await store.get_discrepancy(conn, discrepancy_id)
            actions = await store.actions_of(conn, discrepancy_id)
    if row is None:
        raise FundhubError(ErrorCode.NOT_FOUND, "no such discrepancy")
    return {**wire.discrepancy_body(row), "actions": [wire.action_body(a) for a in actions]}


def refusal(exc: Exception) -> FundhubError:
    """What the reconciliation context raised, as the API's refusal."""
    if isinstance(exc, StatementTooLarge):
        return FundhubError(ErrorCode.STATEMENT_TOO_LARGE_UNPACKED, str(exc)[:500])
    if isinstance(exc, StatementRejected):
        return FundhubError(ErrorCode.STATEMENT_REJECTED, str(exc)[:500])
    if isinstance(exc, NoStatement):
        return FundhubError(ErrorCode.NO_STATEMENT, str(exc))
    if isinstance(exc, DiscrepancyNotFound):
        return FundhubError(ErrorCode.NOT_FOUND, "no such discrepancy")
    if isinstance(exc, OwnApproval):
        return FundhubError(ErrorCode.OWN_APPROVAL, str(exc))
    if isinstance(exc, StateConflict):
        return FundhubError(ErrorCode.DISCREPANCY_STATE_CONFLICT, str(exc))
    if isinstance(exc, InvalidAction):
        return FundhubError(ErrorCode.INVALID_PARAMETER, str(exc))
    if isinstance(exc, AdjustmentRefused):
        return FundhubError(ErrorCode.ADJUSTMENT_REFUSED, str(exc)[:300])
    raise exc


_KNOWN = (
    StatementRejected,
    NoStatement,
    DiscrepancyNotFound,
    OwnApproval,
    StateConflict,
    InvalidAction,
    AdjustmentRefused,
)


def reconciliation_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["reconciliation"])

    @router.get(
        "/runs",
        summary="Reconciliation runs of a source and a day (superseded ones too)",
        responses=answers({200: (ReconRuns, "The runs, newest day first")}, 400, 401, 403, 503),
    )
    @edge_route(body_limit=0)
    async def list_runs(
        request: Request,
        source: str | None = Query(default=None, max_length=10),
        day_text: str | None = Query(default=None, alias="date", max_length=10),
        limit: int = Query(default=100, ge=1, le=500),
    ) -> Response:
        await _reader(request)
        wanted, day = _source(source), _day(day_text)
        async with request.app.state.pool.acquire() as conn:
            rows = await store.list_runs(conn, wanted, day, limit)
        return signed(request, success({"items": [wire.run_body(r) for r in rows]}))

    @router.get(
        "/runs/{runId}",
        summary="A run: its counts and sums per class, and (the bank's) balance checks",
        responses=answers({200: (ReconRun, "The run")}, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def get_run(request: Request, runId: str) -> Response:
        await _reader(request)
        body = await _run_or_404(request, runId)
        async with request.app.state.pool.acquire() as conn:
            checks = await store.balance_checks(conn, runId)
        body["balances"] = [wire.balance_body(c) for c in checks]
        return signed(request, success(body))

    @router.get(
        "/runs/{runId}/report",
        summary="The run's daily report: CSV, or an HTML page",
        responses={
            200: {
                "description": "The report",
                "content": {"text/csv": {}, "text/html": {}},
            },
            **answers({}, 400, 401, 403, 404, 503),
        },
    )
    @edge_route(body_limit=0)
    async def report(
        request: Request, runId: str, format: str = Query(default="csv", pattern="^(csv|html)$")
    ) -> Response:
        await _reader(request)
        run = await _run_or_404(request, runId)
        async with request.app.state.pool.acquire() as conn:
            rows = await store.list_discrepancies(
                conn, run_id=runId, klass=None, state=None, after=None, limit=REPORT_ROWS
            )
            checks = await store.balance_checks(conn, runId)
        found = [wire.discrepancy_body(r) for r in rows]
        if format == "html":
            page = html_report(run, found, [wire.balance_body(c) for c in checks])
            answer = Response(page, media_type="text/html; charset=utf-8")
        else:
            answer = Response(csv_report(run, found), media_type="text/csv; charset=utf-8")
        return signed(request, answer)

    @router.get(
        "/discrepancies",
        summary="Discrepancies of a run (or of the current runs) by class and state, by cursor",
        responses=answers({200: (ReconDiscrepancies, "A page")}, 400, 401, 403, 503),
    )
    @edge_route(body_limit=0)
    async def list_discrepancies(
        request: Request,
        runId: str | None = Query(default=None, max_length=30),
        klass: str | None = Query(default=None, alias="class", max_length=30),
        state: str | None = Query(default=None, max_length=30),
        cursor: str | None = Query(default=None, max_length=40),
        limit: int = Query(default=100, ge=1, le=500),
    ) -> Response:
        await _reader(request)
        try:
            wanted_class = None if klass is None else by_wire(klass).value
            wanted_state = None if state is None else State(state).value
        except (KeyError, ValueError):
            raise FundhubError(ErrorCode.INVALID_PARAMETER, "class or state: unknown") from None
        if (runId is not None and not RUN_ID.fullmatch(runId)) or (
            cursor is not None and not DISCREPANCY_ID.fullmatch(cursor)
        ):
            raise FundhubError(ErrorCode.INVALID_PARAMETER, "runId or cursor: invalid")
        async with request.app.state.pool.acquire() as conn:
            rows = await store.list_discrepancies(
                conn,
                run_id=runId,
                klass=wanted_class,
                state=wanted_state,
                after=cursor,
                limit=limit,
            )
        items = [wire.discrepancy_body(r) for r in rows]
        next_cursor = items[-1]["discrepancyId"] if len(items) == limit else None
        return signed(request, success({"items": items, "nextCursor": next_cursor}))

    @router.get(
        "/discrepancies/{discrepancyId}",
        summary="A discrepancy with its evidence and every action taken on it",
        responses=answers({200: (ReconDiscrepancy, "The discrepancy")}, 401, 403, 404, 503),
    )
    @edge_route(body_limit=0)
    async def get_discrepancy(request: Request, discrepancyId: str) -> Response:
        await _reader(request)
        return signed(request, success(await _discrepancy_body(request, discrepancyId)))

    @router.post(
        "/discrepancies/{discrepancyId}/actions",
        summary="Act on a discrepancy: propose an adjustment, approve another key's, carry "
        "over, write off (reason), re-open (reason)",
        responses=answers(
            {200: (ReconDiscrepancy, "Done: the discrepancy as it now stands")},
            400,
            401,
            (403, "Refused: scope or account (E007, E008), or own approval (E062_OWN_APPROVAL)"),
            404,
            (409, "Refused (E061_DISCREPANCY_STATE_CONFLICT): not in this state"),
            413,
            (422, "Refused (E064_ADJUSTMENT_REFUSED): no such account, or not enough on it"),
            503,
        ),
        openapi_extra=request_body(ActionIn),
    )
    @edge_route(body_limit=MAX_ACTION_BODY_BYTES)
    async def act_on(request: Request, discrepancyId: str) -> Response:
        key = await _writer(request)
        try:
            asked = ActionIn.model_validate(json_value((await request.body()).decode()))
        except (ValidationError, ValueError, UnicodeDecodeError):
            raise FundhubError(ErrorCode.INVALID_PARAMETER, "body: invalid action") from None
        if not DISCREPANCY_ID.fullmatch(discrepancyId):
            raise FundhubError(ErrorCode.NOT_FOUND, "no such discrepancy")
        try:
            adjustment = (
                None
                if asked.adjustment is None
                else Adjustment(asked.adjustment.account_id, asked.adjustment.amount_fen)
            )
            async with request.app.state.pool.acquire() as conn, conn.transaction():
                await act(
                    conn,
                    discrepancyId,
                    ACTIONS[asked.action],
                    actor=key.key_id,
                    reason=asked.reason,
                    adjustment=adjustment,
                )
        except _KNOWN as exc:
            raise refusal(exc) from None
        return signed(request, success(await _discrepancy_body(request, discrepancyId)))

    @router.post(
        "/statements",
        summary="Upload a statement file (the raw bytes as the source gave them): parsed "
        "strictly, imported, the day's run redone; the same bytes again change nothing",
        responses=answers(
            {
                201: (ReconIntake, "Imported, and the day reconciled"),
                200: (ReconIntake, "These very bytes were imported before: nothing changed"),
            },
            400,
            401,
            403,
            (413, "Refused (E011_PAYLOAD_TOO_LARGE): more than 64 MiB, found while reading"),
            (415, "Refused (E075_UNSUPPORTED_MEDIA_TYPE): not a file's Content-Type"),
            (
                422,
                "Refused (E060_STATEMENT_REJECTED): msg names the file's line and why; or "
                "(E076_STATEMENT_TOO_LARGE_UNPACKED) a gzip or zip that unpacks past its bound",
            ),
            503,
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    @edge_route(body_limit=MAX_UPLOAD_BYTES, spool=True, media_types=UPLOAD_MEDIA_TYPES)
    async def upload(
        request: Request,
        source: str = Query(max_length=10),
        day_text: str = Query(alias="date", max_length=10),
        name: str = Query(default="statement", max_length=100),
    ) -> Response:
        key = await _writer(request)
        wanted, day = _source(source), _day(day_text)
        if wanted is None or day is None or not FILE_NAME.fullmatch(name):
            raise FundhubError(ErrorCode.INVALID_PARAMETER, "source, date or name: invalid")
        spooled = spooled_body(request)
        try:
            if spooled.size > settings.recon_max_file_bytes:
                raise StatementRejected(
                    name, 0, f"larger than {settings.recon_max_file_bytes} bytes"
                )
            taken = await take_stream(
                request.app.state.pool,
                wanted,
                day,
                name,
                spooled.file,
                sha256=spooled.sha256,
                by=key.key_id,
                settings=settings,
            )
        except _KNOWN as exc:
            raise refusal(exc) from None
        status = 201 if taken.imported.created else 200
        body: dict[str, Any] = {
            "fileId": taken.imported.file_id,
            "created": taken.imported.created,
            "supersededFileId": taken.imported.superseded,
            "run": None,
        }
        if taken.run is not None:
            async with request.app.state.pool.acquire() as conn:
                row = await store.get_run(conn, taken.run.run_id)
            assert row is not None
            body["run"] = wire.run_body(row)
        return signed(request, success(body, status=status))

    return router
