"""The depository's JSON-over-HTTP split API (``depository/v1``): the ``DepositoryPort`` the
scheduler uses. The rules every adapter keeps are in ``settlement.depository``; this module only
speaks HTTP, over the process's one connection pool to the bank (``payouts.bank_http``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from fundhub.common import retry
from fundhub.settlement.depository import (
    NOT_FOUND,
    SPLITS_PATH,
    DepositoryRefused,
    DepositoryUnavailable,
    SplitInstruction,
    SplitReport,
    parse_answer,
    refusal_reason,
)

log = structlog.get_logger(__name__)

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_RETRIED_4XX = frozenset({408, 429})
_EXCERPT = 200


class _Retry(Exception):
    """One attempt failed in a way another try may cure."""


class HttpDepository:
    """``POST {base_url}/depository/v1/splits`` and ``GET .../splits/{id}``.

    Timeouts, connection errors, 5xx, 408, 429 and unreadable answers are retried ``retries``
    times with the same ``split_request_id`` (the bank dedupes it), then DepositoryUnavailable.
    Any other 4xx is the bank's refusal of the request: DepositoryRefused, not retried.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s > 0, retries >= 0, backoff_s >= 0")
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retries = retries
        self._backoff_s = backoff_s

    async def register_split(self, instruction: SplitInstruction) -> SplitReport:
        body = orjson.dumps(instruction.to_wire())
        report = await self._with_retries(
            "register", instruction.split_request_id, "POST", self.base_url + SPLITS_PATH, body
        )
        if report is None:
            raise DepositoryUnavailable("register: the bank answered NOT_FOUND to a POST")
        return report

    async def query_split(self, split_request_id: str) -> SplitReport | None:
        url = f"{self.base_url}{SPLITS_PATH}/{quote(split_request_id, safe='')}"
        return await self._with_retries("query", split_request_id, "GET", url, None)

    async def _with_retries(
        self, action: str, split_request_id: str, method: str, url: str, body: bytes | None
    ) -> SplitReport | None:
        attempts = 0
        try:
            async for attempt in retry.a_few_times(
                f"depository {action}", self._retries + 1, on=(_Retry,), base_s=self._backoff_s
            ):
                with attempt:
                    attempts += 1
                    try:
                        return await self._attempt(method, url, body, split_request_id)
                    except _Retry as exc:
                        log.warning(
                            "depository_attempt_failed",
                            action=action,
                            split_request_id=split_request_id,
                            attempt=attempts,
                            reason=str(exc),
                        )
                        raise
        except _Retry as exc:
            raise DepositoryUnavailable(f"{action} {split_request_id}: {exc}") from exc
        raise AssertionError("unreachable: the retries end in a return or a raise")

    async def _attempt(
        self, method: str, url: str, body: bytes | None, split_request_id: str
    ) -> SplitReport | None:
        try:
            async with self._session.request(
                method, url, data=body, headers=_HEADERS, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:
            raise _Retry("no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"transport error ({type(exc).__name__})") from exc
        if status >= 500 or status in _RETRIED_4XX:
            raise _Retry(f"HTTP {status}: {_excerpt(raw)}")
        parsed = _loads(raw)
        if status == 404 and method == "GET":
            # Only the bank's own NOT_FOUND says it never got the instruction.
            if isinstance(parsed, Mapping) and parsed.get("status") == NOT_FOUND:
                return None
            raise _Retry(f"HTTP 404 without the bank's NOT_FOUND: {_excerpt(raw)}")
        if status != 200:
            raise DepositoryRefused(status, refusal_reason(parsed, _excerpt(raw)))
        try:
            return parse_answer(parsed, split_request_id)
        except ValueError as exc:
            raise _Retry(f"unusable answer: {exc}") from exc


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:_EXCERPT]
