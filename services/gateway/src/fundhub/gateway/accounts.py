"""``/v1/accounts``: real-time balance and the movement history, for keys with balance:read."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_BALANCE_READ
from fundhub.common.clock import iso_utc_ms
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated, require_account
from fundhub.gateway.responses import signed, success
from fundhub.gateway.schemas import Balance, Transactions, answers
from fundhub.ledger import balances

RECENT_MOVEMENTS = 10
ACCOUNT_ID = Path(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")


def _not_found(account_id: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"account {account_id} not found")


def accounts_router() -> APIRouter:
    router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

    @router.get(
        "/{accountId}/balance",
        summary="Real-time balance and latest movements",
        responses=answers({200: (Balance, "The balance")}, 400, 401, 403, 404, 503),
    )
    async def get_balance(request: Request, accountId: str = ACCOUNT_ID) -> Response:
        key = await authenticated(request, SCOPE_BALANCE_READ)
        require_account(key, accountId)
        async with request.app.state.pool.acquire() as conn:
            found = await balances.statement(conn, accountId, RECENT_MOVEMENTS)
        if found is None or found.balance.derived:  # system accounts are not the API's
            raise _not_found(accountId)
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
    )
    async def list_transactions(
        request: Request,
        accountId: str = ACCOUNT_ID,
        cursor: str | None = Query(default=None, max_length=64),
        limit: int = Query(default=50, ge=1, le=200),
    ) -> Response:
        key = await authenticated(request, SCOPE_BALANCE_READ)
        require_account(key, accountId)
        try:
            before = balances.decode_cursor(cursor) if cursor else None
        except balances.BadCursor as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, f"cursor: {exc}") from exc
        async with request.app.state.pool.acquire() as conn:
            if not await balances.account_exists(conn, accountId):
                raise _not_found(accountId)
            items, next_cursor = await balances.transactions(conn, accountId, before, limit)
        page = {"accountId": accountId, "items": items, "nextCursor": next_cursor}
        return signed(request, success(page))

    return router
