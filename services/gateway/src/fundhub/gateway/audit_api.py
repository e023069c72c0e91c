"""``GET /v1/audit/entries``: the audit log by key and time, for keys with ``audit:read``.

A key reads its own entries; one that holds every account (``*``) may name any key. Newest
first, by cursor (the last sequence number seen)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fundhub.access.keys import ALL_ACCOUNTS, SCOPE_AUDIT_READ
from fundhub.audit import store
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated
from fundhub.gateway.responses import signed, success
from fundhub.gateway.schemas import answers

MAX_CURSOR = 2**63 - 1


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True, frozen=True)

    seq: int
    id: str
    at: datetime
    kind: str
    actor: str | None
    source: str
    route: str
    params: dict[str, Any]
    status: int
    error_code: str | None
    latency_ms: float
    correlation_id: str


class AuditPage(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True, frozen=True)

    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    items: Annotated[list[AuditEntryOut], Field(description="newest first")]
    next_cursor: Annotated[str | None, Field(description="the next page's cursor; null at the end")]


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise FundhubError(ErrorCode.INVALID_PARAMETER, f"{name}: not an ISO 8601 time") from None


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) <= MAX_CURSOR:
        raise FundhubError(ErrorCode.INVALID_PARAMETER, "cursor: invalid")
    return int(text)


def audit_router() -> APIRouter:
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    @router.get(
        "/entries",
        summary="Audit entries of a key between two times, newest first, by cursor",
        responses=answers({200: (AuditPage, "A page of audit entries")}, 400, 401, 403, 503),
    )
    async def list_entries(
        request: Request,
        keyId: str | None = Query(default=None, pattern=r"^[A-Za-z0-9._:-]{1,64}$"),
        since: str | None = Query(default=None, max_length=40),
        until: str | None = Query(default=None, max_length=40),
        cursor: str | None = Query(default=None, max_length=20),
        limit: int = Query(default=100, ge=1, le=500),
    ) -> Response:
        key = await authenticated(request, SCOPE_AUDIT_READ)
        actor = keyId or key.key_id
        if actor != key.key_id and ALL_ACCOUNTS not in key.accounts:
            raise FundhubError(ErrorCode.SCOPE_FORBIDDEN, "keyId: only a key's own entries")
        start, end, before = _moment("since", since), _moment("until", until), _cursor(cursor)
        async with request.app.state.pool.acquire() as conn:
            page = await store.query(
                conn, actor=actor, since=start, until=end, before_seq=before, limit=limit
            )
        next_cursor = str(page.next_cursor) if page.next_cursor is not None else None
        return signed(request, success({"items": page.entries, "nextCursor": next_cursor}))

    return router
