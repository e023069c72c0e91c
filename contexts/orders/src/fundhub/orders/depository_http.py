"""The depository's order registration over HTTP (``orders.depository``'s protocol), its
answers verified with the bank app's keys.

One attempt takes at most ``timeout_s``; a timeout, a transport error, a 5xx or an answer that
is unreadable or not signed by the bank is tried once more (``attempts``), with the same order
id, which the depository dedupes; then ``DepositoryUnavailable``. The gateway calls this while
the platform waits, so the bound is small: at most ``attempts * timeout_s`` plus a short pause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
import structlog

from fundhub.bank_client.exchange import JsonExchange, TryAgain
from fundhub.orders.depository import (
    REGISTER_PATH,
    DepositoryRefused,
    DepositoryUnavailable,
    OrderRegistration,
    Registered,
    read_answer,
)
from fundhub.orders.metrics import DEPOSITORY_CALLS

log = structlog.get_logger(__name__)


class SigningApp(Protocol):
    def verifies(self, params: Mapping[str, Any], signature: str) -> bool: ...


class SigningApps(Protocol):
    """Where the bank's keys are (``bank_transfers.bank_apps.BankAppStore``)."""

    async def get(self, app_id: str) -> Any: ...


class HttpDepository:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        apps: SigningApps,
        app_id: str,
        timeout_s: float = 3.0,
        attempts: int = 2,
    ) -> None:
        """``app_id``: the bank app whose keys must have signed every answer."""
        self._http = JsonExchange(
            session,
            event="depository_register_attempt_failed",
            unavailable=DepositoryUnavailable,
            timeout_s=timeout_s,
            retries=attempts - 1,
            backoff_s=0.1,
            max_backoff_s=0.5,
        )
        self._url = base_url.rstrip("/") + REGISTER_PATH
        self._apps = apps
        self._app_id = app_id

    async def register(self, registration: OrderRegistration) -> Registered:
        body = orjson.dumps(registration.to_wire())
        order_id = registration.order_id

        async def once() -> Registered:
            reply = await self._http.send("POST", self._url, body)
            params = await self._verified(reply.parsed, order_id)
            try:
                return read_answer(params, order_id)
            except (ValueError, TypeError) as exc:
                raise TryAgain(f"unusable answer (HTTP {reply.status}): {exc}") from exc

        try:
            registered = await self._http.call("register", order_id, once, order_id=order_id)
        except DepositoryUnavailable:
            DEPOSITORY_CALLS.labels("unavailable").inc()
            raise
        except DepositoryRefused:
            DEPOSITORY_CALLS.labels("refused").inc()
            raise
        DEPOSITORY_CALLS.labels("registered").inc()
        return registered

    async def _verified(self, params: Any, order_id: str) -> Mapping[str, Any]:
        """The answer's parameters, only when the bank app's key signed them: an answer
        anyone on the path could write must not register, or refuse, an order."""
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise TryAgain("the answer is not the bank's signed envelope")
        app = await self._apps.get(self._app_id) if params.get("app_id") == self._app_id else None
        if app is None or not app.verifies(params, params.get("sign", "")):
            log.error(
                "depository_answer_not_signed_by_the_bank",
                order_id=order_id,
                app_id=params.get("app_id"),
                expected_app_id=self._app_id,
            )
            raise TryAgain("the answer's signature does not verify")
        return params
