"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from fundhub.client import calls
from fundhub.client.errors import FundhubClientError, NetworkError, NotFound, ServerError
from fundhub.client.exchange import (
    RETRYABLE_EXCEPTIONS,
    Call,
    Exchange,
    backoff_delay,
    network_error,
)
from fundhub.client.ids import new_request_id
from fundhub.client.models import Balance, Movement, Page, Payee, Payout
from fundhub.client.webhooks import DEFAULT_TOLERANCE_S, verify_callback


class FundhubClient:
    """Signs every request with the API key, verifies every answer, retries what is safe to.

    Network errors and 5xx are retried ``retries`` times (so at most ``retries + 1`` attempts)
    with a fresh timestamp and nonce each time; a payout keeps its ``requestId`` and its exact
    body, so the gateway recognises the retry and never pays twice. Use it as a context manager
    or call ``close()``; keep one per process (it pools connections).
    """

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        webhook_secret: str | Sequence[str] | None = None,
        timeout_s: float = 10,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        *,
        backoff_s: float = 0.25,
    ) -> None:
        if retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0, timeout_s > 0")
        self._exchange = Exchange(base_url, key_id, secret)
        self._webhook_secret = webhook_secret
        self._retries = retries
        self._backoff_s = backoff_s
        self._http = httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s))

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
        self,
        *,
        supplier_id: str,
        payer_account_id: str,
        amount: int,
        currency: str,
        payee: Payee,
        purpose: str | None = None,
        callback_url: str | None = None,
        extension: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> Payout:
        """Submit a payout (usually answered PROCESSING); ``amount`` in minor units (fen).

        Pass your own ``request_id`` (stored before calling) to be able to resume after a
        crash; errors raised here carry it as ``.request_id`` either way.
        """
        rid = request_id if request_id is not None else new_request_id()
        call = calls.create_payout(
            request_id=rid,
            supplier_id=supplier_id,
            payer_account_id=payer_account_id,
            amount=amount,
            currency=currency,
            payee=payee,
            purpose=purpose,
            callback_url=callback_url,
            extension=extension,
        )
        try:
            return calls.read_payout(self._send(call), request_id=rid, currency=currency)
        except FundhubClientError as exc:
            exc.request_id = rid
            raise

    def get_payout(self, pay_id: str) -> Payout:
        return calls.read_payout(self._send(calls.get_payout(pay_id)))

    def find_payout(self, request_id: str) -> Payout | None:
        """The payout created with ``request_id``, or None when the gateway never took it."""
        try:
            return calls.read_payout(self._send(calls.find_payout(request_id)), request_id)
        except NotFound as exc:
            if calls.is_unknown_payout(exc):
                return None
            raise

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

    # --- callbacks -------------------------------------------------------------------------

    def verify_callback(
        self,
        timestamp_header: str | None,
        signature_header: str | None,
        body: bytes,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
    ) -> dict[str, Any]:
        """``verify_callback`` with this client's ``webhook_secret``."""
        if not self._webhook_secret:
            raise RuntimeError("this client was created without a webhook_secret")
        return verify_callback(
            self._webhook_secret, timestamp_header, signature_header, body, tolerance_s
        )

    # --- transport -------------------------------------------------------------------------

    def _send(self, call: Call) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self._attempt(call, attempt)
            except (ServerError, NetworkError):
                if attempt >= self._retries:
                    raise
            time.sleep(backoff_delay(self._backoff_s, attempt))
            attempt += 1

    def _attempt(self, call: Call, attempt: int) -> dict[str, Any]:
        request = self._exchange.build(call)
        try:
            response = self._http.send(request)
        except RETRYABLE_EXCEPTIONS as exc:
            raise network_error(exc, attempt + 1) from exc
        return self._exchange.interpret(response)
