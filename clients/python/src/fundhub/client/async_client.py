"""The asyncio client: the same API as ``FundhubClient``, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Unpack

import httpx

from fundhub.client import calls
from fundhub.client.calls import PayoutFields
from fundhub.client.errors import NotFound
from fundhub.client.exchange import Call, ClientBase
from fundhub.client.ids import new_request_id
from fundhub.client.models import Balance, Movement, Page, Payout


class AsyncFundhubClient(ClientBase[httpx.AsyncBaseTransport, httpx.AsyncClient]):
    """``FundhubClient`` for asyncio: same arguments, same retries, methods are coroutines.

    Use it as an async context manager or call ``aclose()``; one instance serves many
    concurrent tasks on its event loop.
    """

    def _open(
        self, transport: httpx.AsyncBaseTransport | None, timeout: httpx.Timeout
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, timeout=timeout)

    async def __aenter__(self) -> AsyncFundhubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- payouts ---------------------------------------------------------------------------

    async def create_payout(
        self, *, request_id: str | None = None, **payout: Unpack[PayoutFields]
    ) -> Payout:
        """``FundhubClient.create_payout``, awaited."""
        rid = request_id if request_id is not None else new_request_id()
        with calls.carrying(rid):
            answer = await self._send(calls.create_payout(request_id=rid, **payout))
            return calls.read_payout(answer, request_id=rid, currency=payout["currency"])

    async def get_payout(self, pay_id: str) -> Payout:
        return calls.read_payout(await self._send(calls.get_payout(pay_id)))

    async def find_payout(self, request_id: str) -> Payout | None:
        """The payout created with ``request_id``, or None when the gateway never took it."""
        try:
            answer = await self._send(calls.find_payout(request_id))
        except NotFound as exc:
            if calls.is_unknown_payout(exc):
                return None
            raise
        return calls.read_payout(answer, request_id)

    # --- accounts --------------------------------------------------------------------------

    async def balance(self, account_id: str) -> Balance:
        return Balance.from_wire(await self._send(calls.balance(account_id)))

    async def transactions(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page:
        """One page of movements, newest first; pass ``page.next_cursor`` for the next."""
        return Page.from_wire(await self._send(calls.transactions(account_id, cursor, limit)))

    async def iter_transactions(self, account_id: str, limit: int = 200) -> AsyncIterator[Movement]:
        """Every movement, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.transactions(account_id, cursor, limit)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- transport -------------------------------------------------------------------------

    async def _send(self, call: Call) -> dict[str, Any]:
        attempt_no = 0
        while True:
            attempt_no += 1
            try:
                request = self._exchange.build(call)
                return self._exchange.interpret(await self._http.send(request))
            except Exception as exc:  # the policy raises what is not to be tried again
                await asyncio.sleep(self._retry.pause(exc, attempt_no))
