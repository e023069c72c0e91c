"""Talking to the bank about payouts: the adapter interface and its HTTP implementation.

The payment worker codes against ``BankPayoutAdapter`` only, so a real bank's adapter plugs in
beside ``HttpBankAdapter`` (which speaks the simulator's protocol, ``bank/v1``). The protocol's
names live here too, so the simulator (the bank side) and the worker (the client side) agree.

The one rule every adapter keeps: a payout is sent under its ``bank_request_id`` (our payId)
and only ever under it, so a retry the bank already saw is deduplicated by the bank instead of
paying twice. An answer that never came is not a failure: the caller asks again (``query``).
That holds for a batch (``submit_many``) too: each order in it is the same order it would be
alone, so a batch retried, or an order of it sent again alone, is deduplicated all the same.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from fundhub.common.money import MoneyError, normalize_currency

log = structlog.get_logger("fundhub.common.bank_payouts")

TRANSFERS_PATH = "/bank/v1/transfers"
# Many transfers in one request: {"transfers": [<transfer body>, ...]} with 1 to MAX_BATCH
# items, answered 200 {"results": [...]} in the same order, each item a transfer answer or a
# refusal of that order alone, {"bank_request_id", "status": REFUSED, "code": 400|409, "error"}.
BATCH_PATH = TRANSFERS_PATH + "/batch"
MAX_BATCH = 200
REFUSED = "REFUSED"
# The signed notification the bank sends to ``notify_url`` when a payout's result is known.
RESULT_METHOD = "bkfunds.payout.result.notify"
# The same, for many payouts at once: biz_content is {"results": [<a RESULT_METHOD biz>, ...]}
# (1 to MAX_BATCH_RESULTS items, in payout_results), accepted or refused whole.
RESULTS_METHOD = "bkfunds.payout.results.notify"
NOT_FOUND = "NOT_FOUND"
# Reasons the bank gives for a bad payee account all start with this word; the worker maps
# them to E016_PAYEE_INVALID and every other refusal to E015_BANK_REJECTED.
PAYEE_REASON_PREFIX = "payee "

_ANSWER_LIMIT = 200
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_RETRIED_4XX = frozenset({408, 429})  # request timeout, too many requests: try again
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_T = TypeVar("_T")


class BankStatus(StrEnum):
    """Where the bank says a payout is. RETURNED: paid, then sent back by the payee's bank."""

    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETURNED = "RETURNED"


def payee_invalid(reason: str | None) -> bool:
    """Whether the bank's failure reason blames the payee account (see PAYEE_REASON_PREFIX)."""
    return reason is not None and reason.lower().startswith(PAYEE_REASON_PREFIX)


@dataclass(frozen=True, slots=True)
class PayoutOrder:
    """What we ask the bank to pay; ``amount`` in minor units, ``currency`` ISO 4217."""

    bank_request_id: str
    payer_account: str
    amount: int
    currency: str
    payee_account_no: str
    payee_account_name: str
    payee_bank_name: str
    notify_url: str
    purpose: str | None = None

    def __post_init__(self) -> None:
        if not _REQUEST_ID.fullmatch(self.bank_request_id):
            raise ValueError("bank_request_id: 1 to 64 of [A-Za-z0-9._:-]")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError("amount: must be a positive integer of minor units")
        try:
            iso = normalize_currency(self.currency)
        except MoneyError as exc:
            raise ValueError(f"currency: {exc}") from exc
        if iso != self.currency:
            raise ValueError(f"currency: give the ISO 4217 code ({iso})")
        for name in ("payer_account", "payee_account_no", "payee_account_name", "payee_bank_name"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if not self.notify_url.startswith(("http://", "https://")):
            raise ValueError("notify_url: must be an http(s) URL")

    def to_wire(self) -> dict[str, str]:
        """The transfer request body: snake_case strings, the amount as a string of fen."""
        body = {
            "bank_request_id": self.bank_request_id,
            "payer_account": self.payer_account,
            "amount": str(self.amount),
            "currency": self.currency,
            "payee_account_no": self.payee_account_no,
            "payee_account_name": self.payee_account_name,
            "payee_bank_name": self.payee_bank_name,
            "notify_url": self.notify_url,
        }
        if self.purpose:
            body["purpose"] = self.purpose
        return body


@dataclass(frozen=True, slots=True)
class BankAnswer:
    """The bank's word on one payout: its status, its own transaction id, and why (failures)."""

    status: BankStatus
    bank_txn_id: str | None
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status is not BankStatus.PROCESSING


class BankError(Exception):
    """Anything that keeps an adapter from giving a ``BankAnswer``."""


class BankUnavailable(BankError):
    """No usable answer after the retries: timeouts, 5xx, refused or dropped connections.

    The bank may or may not have the payout: ask again later with ``query`` (or resubmit the
    same order, which the bank deduplicates); never treat this as a failed payout.
    """


class BankRequestRefused(BankError):
    """The bank refused the request itself (4xx): malformed, or the id reused with other data.

    Not retried, since sending the same bytes again gets the same refusal. A 400 means the
    bank made no transfer from this request; after a 409 the id names another transfer, so
    ``query`` tells what happened to it.
    """

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


class BankPayoutAdapter(Protocol):
    """A bank that pays out. Implementations retry transient failures themselves."""

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        """Send the order (idempotent by ``order.bank_request_id``) and return the bank's answer.

        Raises ``BankUnavailable`` when no answer came, ``BankRequestRefused`` on a refusal.
        """
        ...

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        """Send the orders in as few requests as the bank takes; one outcome per order, in order.

        Each outcome is what ``submit`` would have returned or raised for that order alone, so
        one bad order costs only itself. Raises ``BankUnavailable`` when a request got no usable
        answer (the bank may hold any of its orders: ``query`` them), and ``BankRequestRefused``
        when the bank refused a request as a whole (a malformed batch, not a verdict on any one
        order, which sent alone may well be taken). Either way no order has an outcome here.
        """
        ...

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        """The payout's current state; None only when the bank says it never received it."""
        ...


class _Retry(Exception):
    """One attempt failed in a way worth another try (kept inside this module)."""


def parse_answer(body: Any, bank_request_id: str) -> BankAnswer:
    """Check a transfer answer's shape; ValueError names what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    if body.get("bank_request_id") != bank_request_id:
        raise ValueError("answer is about another bank_request_id")
    try:
        status = BankStatus(str(body.get("status")))
    except ValueError:
        raise ValueError(f"unknown status {str(body.get('status'))[:40]!r}") from None
    txn_id = body.get("bank_txn_id")
    if not isinstance(txn_id, str) or not 0 < len(txn_id) <= 64:
        raise ValueError("bank_txn_id: missing or not a string of 1 to 64 characters")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason: not a string")
    return BankAnswer(status=status, bank_txn_id=txn_id, reason=reason or None)


def parse_batch_answer(
    body: Any, bank_request_ids: Sequence[str]
) -> list[BankAnswer | BankRequestRefused]:
    """Check a batch answer: exactly one item per sent order, in the order sent, each a transfer
    answer or a refusal of that order. Anything else (an item missing, extra, about another id)
    makes the whole answer unusable, since the items could no longer be told apart safely;
    ValueError names what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    results = body.get("results")
    if not isinstance(results, list):
        raise ValueError("results: missing or not a list")
    if len(results) != len(bank_request_ids):
        raise ValueError(f"results: {len(results)} items for {len(bank_request_ids)} orders")
    outcomes: list[BankAnswer | BankRequestRefused] = []
    for index, (item, bank_request_id) in enumerate(zip(results, bank_request_ids, strict=True)):
        try:
            outcomes.append(_batch_item(item, bank_request_id))
        except ValueError as exc:
            raise ValueError(f"results[{index}]: {exc}") from None
    return outcomes


def _batch_item(item: Any, bank_request_id: str) -> BankAnswer | BankRequestRefused:
    if not isinstance(item, Mapping) or item.get("status") != REFUSED:
        return parse_answer(item, bank_request_id)
    if item.get("bank_request_id") != bank_request_id:
        raise ValueError("answer is about another bank_request_id")
    code = item.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 499:
        raise ValueError("code: a refusal's code must be a 4xx status")
    return BankRequestRefused(code, _refusal_reason(item, ""))


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
        rng: random.Random | None = None,
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
        self._rng = rng or random.Random()
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

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before re-sending after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, ceiling)

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
        attempt = 0
        while True:
            attempt += 1
            try:
                return await attempt_once()
            except _Retry as exc:
                reason = str(exc)
            will_retry = attempt <= self.retries
            log.warning(
                "bank_payout_attempt_failed",
                action=action,
                attempt=attempt,
                reason=reason,
                will_retry=will_retry,
                **context,
            )
            if not will_retry:
                raise BankUnavailable(f"{action} {subject}: {reason} ({attempt} attempts)")
            await self._sleep(self.backoff(attempt))

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
        if status != 200:
            raise BankRequestRefused(status, _refusal_reason(parsed, _excerpt(raw)))
        try:
            return parse_answer(parsed, bank_request_id)
        except ValueError as exc:
            raise _Retry(f"unusable answer: {exc}") from exc

    async def _attempt_batch(
        self, url: str, body: bytes, bank_request_ids: Sequence[str]
    ) -> list[BankAnswer | BankRequestRefused]:
        status, raw = await self._exchange("POST", url, body)
        parsed = _loads(raw)
        if status != 200:
            raise BankRequestRefused(status, _refusal_reason(parsed, _excerpt(raw)))
        try:
            return parse_batch_answer(parsed, bank_request_ids)
        except ValueError as exc:
            raise _Retry(f"unusable answer: {exc}") from exc


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:_ANSWER_LIMIT]


def _refusal_reason(parsed: Any, text: str) -> str:
    if isinstance(parsed, Mapping):
        for key in ("reason", "error"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value[:_ANSWER_LIMIT]
    return text or "no reason given"
