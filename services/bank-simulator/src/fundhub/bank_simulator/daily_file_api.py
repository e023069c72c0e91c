"""The bank's daily files (``docs/bank-daily-files.md``) served as the bank serves them.

``POST /bank/v1/files/daily`` ``{"app_id", "file_date"}`` answers the file's name, size,
SHA-256 and a one-time ``download_url`` (valid five minutes); ``GET`` on it gives the file once.
A day's file is made at its first request once the day is over (GMT+8) and then kept as made
(the same bytes); ``PUT /bank/v1/simulator/daily-files/{date}`` (tests and demos) makes it now,
the day over or not, with injected discrepancies: made again, it is a corrected file.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fundhub.bank_simulator.daily_files import (
    Discrepancy,
    daily_file,
    day_bounds,
    file_name,
    postings,
)
from fundhub.bank_simulator.depository_refund_debits import RefundDebitDesk
from fundhub.bank_simulator.depository_splits import SplitDesk
from fundhub.bank_simulator.payouts_bank import PayoutBank
from fundhub.bank_simulator.runs import RunRegistry
from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.reconciliation.bank_file_http import DAILY_FILES_PATH, DOWNLOAD_PATH, FILE_NOT_READY

RELEASE_PATH = "/bank/v1/simulator/daily-files"
DOWNLOAD_TTL = timedelta(minutes=5)
_MAX_BODY = 4 * 1024
_MAX_DOWNLOADS = 1_000


class FileRelease(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    discrepancies: list[Discrepancy] = Field(default_factory=list, max_length=10_000)


@dataclass(frozen=True, slots=True)
class _Download:
    name: str
    content: bytes
    expires_at: datetime


class DailyFiles:
    """The files made so far, by day, and the pending one-time downloads."""

    def __init__(
        self,
        app_id: str,
        runs: RunRegistry,
        bank: PayoutBank,
        splits: SplitDesk,
        debits: RefundDebitDesk | None = None,
    ) -> None:
        self.app_id = app_id
        self._runs, self._bank, self._splits = runs, bank, splits
        self._debits = debits or RefundDebitDesk(splits)
        self._made: dict[date, bytes] = {}
        self._downloads: dict[str, _Download] = {}

    def make(self, day: date, now: datetime, discrepancies: list[Discrepancy]) -> bytes:
        history = postings(
            self._runs.recent(),
            self._bank.transfers(),
            self._splits.splits.values(),
            self._debits.done(now),
        )
        content = daily_file(history, self.app_id, day, now, discrepancies)
        self._made[day] = content
        return content

    def file(self, day: date, now: datetime) -> bytes | None:
        """The day's file, made now if the day is over and it was not made yet; else None."""
        made = self._made.get(day)
        if made is None and now >= day_bounds(day)[1]:
            made = self.make(day, now, [])
        return made

    def offer(self, name: str, content: bytes, now: datetime) -> str:
        self._downloads = {t: d for t, d in self._downloads.items() if d.expires_at > now}
        while len(self._downloads) >= _MAX_DOWNLOADS:
            self._downloads.pop(next(iter(self._downloads)))
        token = secrets.token_urlsafe(24)
        self._downloads[token] = _Download(name, content, now + DOWNLOAD_TTL)
        return token

    def take(self, token: str, now: datetime) -> _Download | None:
        """Once: a one-time password is spent by its use."""
        download = self._downloads.pop(token, None)
        if download is None or download.expires_at <= now:
            return None
        return download


def _answer(body: dict[str, Any], status_code: int = status.HTTP_200_OK) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _refusal(status_code: int, code: str, message: str) -> Response:
    return _answer({"code": code, "message": message}, status_code)


def daily_file_router(files: DailyFiles) -> APIRouter:
    router = APIRouter(tags=["bank daily files"])

    @router.post(DAILY_FILES_PATH, summary="A day's file: its name, size, SHA-256, download URL")
    async def daily(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            return _refusal(400, "BAD_REQUEST", "body too large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _refusal(400, "BAD_REQUEST", "body: not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("file_date"), str):
            return _refusal(400, "BAD_REQUEST", "file_date: yyyy-MM-dd")
        if body.get("app_id") != files.app_id:
            return _refusal(404, "NO_SUCH_APP", "no files for this app_id")
        try:
            day = date.fromisoformat(body["file_date"])
        except ValueError:
            return _refusal(400, "BAD_REQUEST", "file_date: yyyy-MM-dd")
        now = utcnow()
        if day > now.astimezone(BANK_TZ).date():
            return _refusal(400, "BAD_REQUEST", "file_date: not ahead")
        content = files.file(day, now)
        if content is None:
            return _refusal(404, FILE_NOT_READY, "the file of that day is made after its end")
        name = file_name(files.app_id, day)
        token = files.offer(name, content, now)
        return _answer(
            {
                "file_name": name,
                "file_date": day.isoformat(),
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "download_url": str(request.base_url).rstrip("/") + f"{DOWNLOAD_PATH}/{token}",
                "expires_in": int(DOWNLOAD_TTL.total_seconds()),
            }
        )

    @router.get(DOWNLOAD_PATH + "/{token}", summary="The file, once per download URL")
    async def download(token: str) -> Response:
        found = files.take(token, utcnow())
        if found is None:
            return _refusal(404, "NOT_FOUND", "no such download, used or expired")
        return Response(
            found.content,
            media_type="text/plain; charset=GBK",
            headers={"Content-Disposition": f'attachment; filename="{found.name}"'},
        )

    @router.put(RELEASE_PATH + "/{file_date}", summary="Make a day's file now (tests, demos)")
    async def release(file_date: str, request: Request) -> Response:
        try:
            day = date.fromisoformat(file_date)
            wanted = FileRelease.model_validate(orjson.loads(await request.body() or b"{}"))
            content = files.make(day, utcnow(), wanted.discrepancies)
        except (ValueError, ValidationError, orjson.JSONDecodeError) as exc:
            return _refusal(400, "BAD_REQUEST", str(exc)[:500])
        lines = content.count(b"\nD|") + content.startswith(b"D|")
        return _answer({"file_date": day.isoformat(), "size": len(content), "lines": lines})

    return router
