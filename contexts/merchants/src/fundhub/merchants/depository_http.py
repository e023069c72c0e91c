"""The depository's JSON-over-HTTP member API (``depository/v1``): the ``MemberDepository`` the
worker uses. The rules every adapter keeps are in ``fundhub.merchants.depository``; the HTTP and
its retries are ``fundhub.bank_client``'s, as for payouts (same retries, same session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp

from fundhub.bank_client.exchange import JsonExchange
from fundhub.merchants.depository import (
    NOT_FOUND,
    REQUESTS_PATH,
    DepositoryAnswer,
    DepositoryRefused,
    DepositoryRequest,
    DepositoryUnavailable,
    parse_answer,
)


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
        self._http = JsonExchange(
            session,
            event="depository_attempt_failed",
            unavailable=DepositoryUnavailable,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            sleep=sleep,
        )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries

    async def submit(self, request: DepositoryRequest) -> DepositoryAnswer:
        request_id = request.request_id
        return await self._http.post(
            "submit",
            request_id,
            self.base_url + REQUESTS_PATH,
            request.to_wire(),
            lambda answer: parse_answer(answer, request_id),
            DepositoryRefused,
            request_id=request_id,
        )

    async def query(self, request_id: str) -> DepositoryAnswer | None:
        return await self._http.query(
            request_id,
            f"{self.base_url}{REQUESTS_PATH}/{quote(request_id, safe='')}",
            NOT_FOUND,
            lambda answer: parse_answer(answer, request_id),
            DepositoryRefused,
            request_id=request_id,
        )
