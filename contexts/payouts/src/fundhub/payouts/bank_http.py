"""The bank's JSON-over-HTTP payout API (``bank/v1``): the ``BankPayoutAdapter`` the worker uses.

The rules every adapter keeps are in ``fundhub.payouts.bank``; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from fundhub.common import retry
from fundhub.common.config import Settings
from fundhub.payouts.bank import (
    BATCH_PATH,
    MAX_BATCH,
    NOT_FOUND,
    TRANSFERS_PATH,
    BankAnswer,
    BankRequestRefused,
    BankUnavailable,
    PayoutOrder,
    parse_answer,
    parse_batch_answer,
    refusal_reason,
)

log = structlog.get_logger(__name__)

_ANSWER_LIMIT = 200
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_RETRIED_4XX = frozenset({408, 429})  # request timeout, too many requests: try again

_T = TypeVar("_T")


def bank_tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """TLS towards the bank: TLS 1.2 or later, the bank's CA (else the system's), and our
    client certificate when the bank asks for mutual TLS."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def bank_session(settings: Settings) -> aiohttp.ClientSession:
    """The process's one connection pool to the bank, with the TLS of ``FUNDHUB_BANK_TLS_*``
    (used only for an ``https://`` bank URL)."""
    context = bank_tls_context(
        settings.bank_tls_ca, settings.bank_tls_certfile, settings.bank_tls_keyfile
    )
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0, ssl=context)
    return aiohttp.ClientSession(connector=connector)


class _Retry(Exception):
    """One attempt failed in a way worth another try (kept inside this module)."""


class HttpBankAdapter:
    """The bank's JSON-over-HTTP payout API (``POST/GET {base_url}/bank/v1/transfers``, and
    ``POST .../transfers/batch`` for ``submit_many``, ``max_batch`` orders a request at most).

    Each attempt is bounded by ``timeout_s`` in total. Timeouts, connection errors, 5xx, 408, 429
    and unreadable answers are retried ``retries`` times (so at most ``retries + 1`` attempts)
    with the same ``bank_request_id``, after an exponential backoff with full jitter starting
    at ``backoff_s``. Then ``BankUnavailable``. Other 4xx are final: ``BankRequestRefused``.
    A batch is retried whole, with the same orders in the same order: the bank dedupes each.
    The session is the caller's (one pool per process), and so is its lifetime.
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
        max_batch: int = MAX_BATCH,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("timeout_s > 0, retries >= 0, 0 <= backoff_s <= max_backoff_s")
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch: 1 to {MAX_BATCH}")
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sleep = sleep
        self.max_batch = max_batch

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        url = self.base_url + TRANSFERS_PATH
        body = orjson.dumps(order.to_wire())
        request_id = order.bank_request_id
        answer = await self._with_retries(
            "submit",
            request_id,
            {"bank_request_id": request_id},
            lambda: self._attempt("POST", url, body, request_id),
        )
        if answer is None:  # only a GET can mean "never received"
            raise BankUnavailable(f"submit {request_id}: no answer")
        return answer

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        # One request after the other: a caller wanting them in parallel sends smaller lists.
        outcomes: list[BankAnswer | BankRequestRefused] = []
        for start in range(0, len(orders), self.max_batch):
            outcomes.extend(await self._submit_batch(orders[start : start + self.max_batch]))
        return outcomes

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        url = f"{self.base_url}{TRANSFERS_PATH}/{quote(bank_request_id, safe='')}"
        return await self._with_retries(
            "query",
            bank_request_id,
            {"bank_request_id": bank_request_id},
            lambda: self._attempt("GET", url, None, bank_request_id),
        )

    async def _submit_batch(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        request_ids = [order.bank_request_id for order in orders]
        url = self.base_url + BATCH_PATH
        body = orjson.dumps({"transfers": [order.to_wire() for order in orders]})
        return await self._with_retries(
            "submit_many",
            f"{len(request_ids)} orders from {request_ids[0]}",
            {"bank_request_id": request_ids[0], "orders": len(request_ids)},
            lambda: self._attempt_batch(url, body, request_ids),
        )

    async def _with_retries(
        self,
        action: str,
        subject: str,
        context: Mapping[str, Any],
        attempt_once: Callable[[], Awaitable[_T]],
    ) -> _T:
        attempts = 0
        try:
            async for attempt in retry.a_few_times(
                f"bank {action}",
                self.retries + 1,
                on=(_Retry,),
                base_s=self.backoff_s,
                max_s=self.max_backoff_s,
                sleep=self._sleep,
            ):
                with attempt:
                    attempts += 1
                    try:
                        return await attempt_once()
                    except _Retry as exc:
                        log.warning(
                            "bank_payout_attempt_failed",
                            action=action,
                            attempt=attempts,
                            reason=str(exc),
                            will_retry=attempts <= self.retries,
                            **context,
                        )
                        raise
        except _Retry as exc:
            raise BankUnavailable(f"{action} {subject}: {exc} ({attempts} attempts)") from exc
        raise AssertionError("unreachable: the retries end in a return or a raise")

    async def _exchange(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        """One HTTP request: its status and body, or ``_Retry`` for what a retry may cure."""
        try:
            async with self._session.request(
                method, url, data=body, headers=_JSON_HEADERS, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise _Retry(f"no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"transport error ({type(exc).__name__})") from exc
        if status >= 500 or status in _RETRIED_4XX:
            raise _Retry(f"HTTP {status}: {_excerpt(raw)}")
        return status, raw

    async def _attempt(
        self, method: str, url: str, body: bytes | None, bank_request_id: str
    ) -> BankAnswer | None:
        status, raw = await self._exchange(method, url, body)
        parsed = _loads(raw)
        if status == 404 and method == "GET":
            # Only the bank's own NOT_FOUND counts: a proxy's or a wrong path's 404 must not
            # make a payout look never-received.
            if isinstance(parsed, Mapping) and parsed.get("status") == NOT_FOUND:
                return None
            raise _Retry(f"HTTP 404 without the bank's NOT_FOUND: {_excerpt(raw)}")
        return _read(status, raw, parsed, lambda answer: parse_answer(answer, bank_request_id))

    async def _attempt_batch(
        self, url: str, body: bytes, bank_request_ids: Sequence[str]
    ) -> list[BankAnswer | BankRequestRefused]:
        status, raw = await self._exchange("POST", url, body)
        return _read(
            status, raw, _loads(raw), lambda answer: parse_batch_answer(answer, bank_request_ids)
        )


def _read(status: int, raw: bytes, parsed: Any, parse: Callable[[Any], _T]) -> _T:
    """A 200's answer as ``parse`` reads it (unreadable: worth another try); any other status
    left here is the bank's refusal of the request."""
    if status != 200:
        raise BankRequestRefused(status, refusal_reason(parsed, _excerpt(raw)))
    try:
        return parse(parsed)
    except ValueError as exc:
        raise _Retry(f"unusable answer: {exc}") from exc


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:_ANSWER_LIMIT]
