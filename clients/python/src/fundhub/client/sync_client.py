"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Unpack

import httpx

from fundhub.client import calls
from fundhub.client.calls import PayoutFields
from fundhub.client.errors import NotFound
from fundhub.client.exchange import Call, ClientBase
from fundhub.client.ids import new_request_id
from fundhub.client.models import Balance, Movement, Page, Payout


class FundhubClient(ClientBase[httpx.BaseTransport, httpx.Client]):
    """Signs every request with the API key, verifies every answer, retries what is safe to.

    Network errors and 5xx are retried ``retries`` times (so at most ``retries + 1`` attempts)
    with a fresh timestamp and nonce each time; a payout keeps its ``requestId`` and its exact
    body, so the gateway recognises the retry and never pays twice. Use it as a context manager
    or call ``close()``; keep one per process (it pools connections).
    """

    def _open(self, transport: httpx.BaseTransport | None, timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(transport=transport, timeout=timeout)

    def __enter__(self) -> FundhubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- payouts ---------------------------------------------------------------------------

    def create_payout(
        self, *, request_id: str | None = None, **payout: Unpack[PayoutFields]
    ) -> Payout:
        """Submit a payout (usually answered PROCESSING); ``PayoutFields`` says what it takes.

        Pass your own ``request_id`` (stored before calling) to be able to resume after a
        crash; errors raised here carry it as ``.request_id`` either way.
        """
        rid = request_id if request_id is not None else new_request_id()
        with calls.carrying(rid):
            answer = self._send(calls.create_payout(request_id=rid, **payout))
            return calls.read_payout(answer, request_id=rid, currency=payout["currency"])

    def get_payout(self, pay_id: str) -> Payout:
        return calls.read_payout(self._send(calls.get_payout(pay_id)))

    def find_payout(self, request_id: str) -> Payout | None:
        """The payout created with ``request_id``, or None when the gateway never took it."""
        try:
            answer = self._send(calls.find_payout(request_id))
        except NotFound as exc:
            if calls.is_unknown_payout(exc):
                return None
            raise
        return calls.read_payout(answer, request_id)

    # --- accounts --------------------------------------------------------------------------

    def balance(self, account_id: str) -> Balance:
        return Balance.from_wire(self._send(calls.balance(account_id)))

    def transactions(self, account_id: str, cursor: str | None = None, limit: int = 50) -> Page:
        """One page of movements, newest first; pass ``page.next_cursor`` for the next."""
        return Page.from_wire(self._send(calls.transactions(account_id, cursor, limit)))

    def iter_transactions(self, account_id: str, limit: int = 200) -> Iterator[Movement]:
        """Every movement, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.transactions(account_id, cursor, limit)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- transport -------------------------------------------------------------------------

    def _send(self, call: Call) -> dict[str, Any]:
        attempt_no = 0
        while True:
            attempt_no += 1
            try:
                request = self._exchange.build(call)
                return self._exchange.interpret(self._http.send(request))
            except Exception as exc:  # the policy raises what is not to be tried again
                time.sleep(self._retry.pause(exc, attempt_no))
