"""The depository's JSON-over-HTTP member API (``depository/v1``): the ``MemberDepository`` the
worker uses. The rules every adapter keeps are in ``fundhub.merchants.depository``; this module
only speaks HTTP, as ``payouts.bank_http`` does for payouts (same retries, same session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from fundhub.common import retry
from fundhub.merchants.depository import (
    NOT_FOUND,
    REQUESTS_PATH,
    DepositoryAnswer,
    DepositoryRefused,
    DepositoryRequest,
    DepositoryUnavailable,
    parse_answer,
    refusal_reason,
)

log = structlog.get_logger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_RETRIED_4XX = frozenset({408, 429})
_EXCERPT = 200


class _Retry(Exception):
    """One attempt failed in a way worth another try (kept inside this module)."""


class HttpDepository:
    """``POST {base_url}/depository/v1/requests`` and ``GET …/requests/{request_id}``.

    Each attempt is bounded by ``timeout_s``. Timeouts, connection errors, 5xx, 408, 429 and
    unreadable answers are retried ``retries`` times with the same ``request_id``
    (``common.retry``: exponential backoff, full jitter), then ``DepositoryUnavailable``; other
    4xx are final, ``DepositoryRefused``. The session is the caller's (the process's one pool
    to the bank, with its TLS), and so is its lifetime.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("timeout_s > 0, retries >= 0, 0 <= backoff_s <= max_backoff_s")
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self._backoff = (backoff_s, max_backoff_s)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sleep = sleep

    async def submit(self, request: DepositoryRequest) -> DepositoryAnswer:
        body = orjson.dumps(request.to_wire())
        url = self.base_url + REQUESTS_PATH
        answer = await self._with_retries(
            "submit",
            request.request_id,
            lambda: self._attempt("POST", url, body, request.request_id),
        )
        if answer is None:  # only a GET can mean "never received"
            raise DepositoryUnavailable(f"submit {request.request_id}: no answer")
        return answer

    async def query(self, request_id: str) -> DepositoryAnswer | None:
        url = f"{self.base_url}{REQUESTS_PATH}/{quote(request_id, safe='')}"
        return await self._with_retries(
            "query", request_id, lambda: self._attempt("GET", url, None, request_id)
        )

    async def _with_retries(
        self,
        action: str,
        request_id: str,
        attempt_once: Callable[[], Awaitable[DepositoryAnswer | None]],
    ) -> DepositoryAnswer | None:
        attempts = 0
        base_s, max_s = self._backoff
        try:
            async for attempt in retry.a_few_times(
                f"depository {action}",
                self.retries + 1,
                on=(_Retry,),
                base_s=base_s,
                max_s=max_s,
                sleep=self._sleep,
            ):
                with attempt:
                    attempts += 1
                    try:
                        return await attempt_once()
                    except _Retry as exc:
                        log.warning(
                            "depository_attempt_failed",
                            action=action,
                            request_id=request_id,
                            attempt=attempts,
                            reason=str(exc),
                            will_retry=attempts <= self.retries,
                        )
                        raise
        except _Retry as exc:
            raise DepositoryUnavailable(
                f"{action} {request_id}: {exc} ({attempts} attempts)"
            ) from exc
        raise AssertionError("unreachable: the retries end in a return or a raise")

    async def _attempt(
        self, method: str, url: str, body: bytes | None, request_id: str
    ) -> DepositoryAnswer | None:
        try:
            async with self._session.request(
                method, url, data=body, headers=_JSON_HEADERS, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:
            raise _Retry(f"no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"transport error ({type(exc).__name__})") from exc
        if status >= 500 or status in _RETRIED_4XX:
            raise _Retry(f"HTTP {status}: {_excerpt(raw)}")
        parsed = _loads(raw)
        if status == 404 and method == "GET":
            # Only the bank's own NOT_FOUND counts: a proxy's or a wrong path's 404 must not
            # make a request look never received (it would be sent again, harmlessly, but
            # the real answer would be lost).
            if isinstance(parsed, dict) and parsed.get("status") == NOT_FOUND:
                return None
            raise _Retry(f"HTTP 404 without the bank's NOT_FOUND: {_excerpt(raw)}")
        if status != 200:
            raise DepositoryRefused(status, refusal_reason(parsed, _excerpt(raw)))
        try:
            return parse_answer(parsed, request_id)
        except ValueError as exc:
            raise _Retry(f"unusable answer: {exc}") from exc


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:_EXCERPT]
