"""``/v1/accounts``: real-time balance and the movement history, for keys with balance:read."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway import read_models
from fundhub.gateway.auth import Authenticator, require_account, require_scope
from fundhub.gateway.responses import signed, success

SCOPE_BALANCE_READ = "balance:read"
RECENT_MOVEMENTS = 10
ACCOUNT_ID = Path(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")


def accounts_router() -> APIRouter:
    router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

    @router.get("/{accountId}/balance", summary="Real-time balance and latest movements")
    async def get_balance(request: Request, accountId: str = ACCOUNT_ID) -> Response:
        auth: Authenticator = request.app.state.authenticator
        key = await auth.authenticate(request)
        require_scope(key, SCOPE_BALANCE_READ)
        require_account(key, accountId)
        async with request.app.state.pool.acquire() as conn:
            view = await read_models.balance(conn, accountId, RECENT_MOVEMENTS)
        if view is None:
            raise FundhubError(ErrorCode.NOT_FOUND, f"account {accountId} not found")
        return signed(request, success(view.to_wire()))

    @router.get("/{accountId}/transactions", summary="Movement history, newest first, by cursor")
    async def list_transactions(
        request: Request,
        accountId: str = ACCOUNT_ID,
        cursor: str | None = Query(default=None, max_length=64),
        limit: int = Query(default=50, ge=1, le=200),
    ) -> Response:
        auth: Authenticator = request.app.state.authenticator
        key = await auth.authenticate(request)
        require_scope(key, SCOPE_BALANCE_READ)
        require_account(key, accountId)
        try:
            before = read_models.decode_cursor(cursor) if cursor else None
        except read_models.BadCursor as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, f"cursor: {exc}") from exc
        async with request.app.state.pool.acquire() as conn:
            if not await read_models.account_exists(conn, accountId):
                raise FundhubError(ErrorCode.NOT_FOUND, f"account {accountId} not found")
            items, next_cursor = await read_models.transactions(conn, accountId, before, limit)
        page = {"accountId": accountId, "items": items, "nextCursor": next_cursor}
        return signed(request, success(page))

    return router
