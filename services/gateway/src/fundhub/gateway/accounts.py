"""``/v1/accounts``: real-time balance and the movement history, for keys with balance:read.

Path and query values are checked after authentication (not by FastAPI before the handler
runs), so that every answer to an authenticated caller, a refusal included, is signed; the
document still describes them (``_PARAMETERS``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_BALANCE_READ, ApiKey
from fundhub.common.clock import iso_utc_ms
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated, require_account
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import signed, success
from fundhub.gateway.schemas import Balance, Transactions, answers
from fundhub.ledger import balances
from fundhub.merchants import lookup as merchants

RECENT_MOVEMENTS = 10
_ACCOUNT_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")
MAX_LIMIT = 200
_ACCOUNT_PARAM = {
    "name": "accountId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[0-9A-Za-z_-]+$"},
}
_PAGE_PARAMS = [
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 64},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
    },
]


def _parameters(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": [_ACCOUNT_PARAM, *extra]}


def _invalid(message: str) -> FundhubError:
    return FundhubError(ErrorCode.INVALID_PARAMETER, message)


def _account_id(request: Request) -> str:
    account_id: str = request.path_params["accountId"]
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise _invalid("accountId: 1 to 32 of 0-9 A-Z a-z _ -")
    return account_id


def _limit(text: str | None) -> int:
    if text is None:
        return 50
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise _invalid(f"limit: an integer from 1 to {MAX_LIMIT}")
    return int(text)


async def _require_readable(request: Request, key: ApiKey, account_id: str) -> None:
    """The key's own accounts, and the ledger accounts of the merchants it registered (without
    being given each one); any other is refused as before (E008)."""
    if key.may_access(account_id):
        return
    async with request.app.state.pool.acquire() as conn:
        if await merchants.owns_account(conn, key.key_id, account_id):
            return
    require_account(key, account_id)


def _not_found(account_id: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"account {account_id} not found")


def accounts_router() -> APIRouter:
    router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

    @router.get(
        "/{accountId}/balance",
        summary="Real-time balance and latest movements",
        responses=answers({200: (Balance, "The balance")}, 400, 401, 403, 404, 503),
        openapi_extra=_parameters(),
    )
    @edge_route(body_limit=0)
    async def get_balance(request: Request) -> Response:
        key = await authenticated(request, SCOPE_BALANCE_READ)
        account_id = _account_id(request)
        await _require_readable(request, key, account_id)
        async with request.app.state.pool.acquire() as conn:
            found = await balances.statement(conn, account_id, RECENT_MOVEMENTS)
        if found is None or found.balance.derived:  # system accounts are not the API's
            raise _not_found(account_id)
        b = found.balance
        body = {
            "accountId": b.account_id,
            "currency": b.currency,
            "available": b.available,
            "frozen": b.frozen,
            "pending": b.pending,
            "total": b.total,
            "asOf": iso_utc_ms(b.as_of),
            "movements": found.movements,
        }
        return signed(request, success(body))

    @router.get(
        "/{accountId}/transactions",
        summary="Movement history, newest first, by cursor",
        responses=answers({200: (Transactions, "A page of movements")}, 400, 401, 403, 404, 503),
        openapi_extra=_parameters(*_PAGE_PARAMS),
    )
    @edge_route(body_limit=0)
    async def list_transactions(request: Request) -> Response:
        key = await authenticated(request, SCOPE_BALANCE_READ)
        account_id = _account_id(request)
        await _require_readable(request, key, account_id)
        cursor = request.query_params.get("cursor")
        limit = _limit(request.query_params.get("limit"))
        if cursor is not None and len(cursor) > 64:
            raise _invalid("cursor: at most 64 characters")
        try:
            before = balances.decode_cursor(cursor) if cursor else None
        except balances.BadCursor as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, f"cursor: {exc}") from exc
        async with request.app.state.pool.acquire() as conn:
            if not await balances.account_exists(conn, account_id):
                raise _not_found(account_id)
            items, next_cursor = await balances.transactions(conn, account_id, before, limit)
        page = {"accountId": account_id, "items": items, "nextCursor": next_cursor}
        return signed(request, success(page))

    return router
