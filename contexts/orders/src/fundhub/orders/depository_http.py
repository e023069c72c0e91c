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

from fundhub.common import retry
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

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_EXCERPT = 200


class SigningApp(Protocol):
    def verifies(self, params: Mapping[str, Any], signature: str) -> bool: ...


class SigningApps(Protocol):
    """Where the bank's keys are (``bank_transfers.bank_apps.BankAppStore``)."""

    async def get(self, app_id: str) -> Any: ...


class _Retry(Exception):
    pass


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
        self._session = session
        self._url = base_url.rstrip("/") + REGISTER_PATH
        self._apps = apps
        self._app_id = app_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._attempts = attempts

    async def register(self, registration: OrderRegistration) -> Registered:
        body = orjson.dumps(registration.to_wire())
        try:
            async for attempt in retry.a_few_times(
                "depository register", self._attempts, on=(_Retry,), base_s=0.1, max_s=0.5
            ):
                with attempt:
                    registered = await self._attempt(body, registration.order_id)
                    DEPOSITORY_CALLS.labels("registered").inc()
                    return registered
        except _Retry as exc:
            DEPOSITORY_CALLS.labels("unavailable").inc()
            raise DepositoryUnavailable(str(exc)) from exc
        except DepositoryRefused:
            DEPOSITORY_CALLS.labels("refused").inc()
            raise
        raise AssertionError("unreachable: the retries end in a return or a raise")

    async def _attempt(self, body: bytes, order_id: str) -> Registered:
        try:
            async with self._session.post(
                self._url, data=body, headers=_JSON, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:
            raise _Retry(f"no answer within {self._timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"transport error ({type(exc).__name__})") from exc
        if status >= 500 or status in (408, 429):
            raise _Retry(f"HTTP {status}: {raw[:_EXCERPT].decode('utf-8', 'replace')}")
        params = await self._verified(raw, order_id)
        try:
            return read_answer(params, order_id)
        except (ValueError, TypeError) as exc:  # json errors are ValueErrors
            raise _Retry(f"unusable answer (HTTP {status}): {exc}") from exc

    async def _verified(self, raw: bytes, order_id: str) -> Mapping[str, Any]:
        """The answer's parameters, only when the bank app's key signed them: an answer
        anyone on the path could write must not register, or refuse, an order."""
        try:
            params = orjson.loads(raw)
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise _Retry("the answer is not the bank's signed envelope")
        app = await self._apps.get(self._app_id) if params.get("app_id") == self._app_id else None
        if app is None or not app.verifies(params, params.get("sign", "")):
            log.error(
                "depository_answer_not_signed_by_the_bank",
                order_id=order_id,
                app_id=params.get("app_id"),
                expected_app_id=self._app_id,
            )
            raise _Retry("the answer's signature does not verify")
        return params
