"""The bank's JSON-over-HTTP payout API (``bank/v1``): the ``BankPayoutAdapter`` the worker uses.

The rules every adapter keeps are in ``fundhub.payouts.bank``; the HTTP and its retries are
``fundhub.bank_client``'s; this module only says which requests and how their answers read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

import aiohttp

from fundhub.bank_client.exchange import JsonExchange
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
)


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
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch: 1 to {MAX_BATCH}")
        self._http = JsonExchange(
            session,
            event="bank_payout_attempt_failed",
            unavailable=BankUnavailable,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            sleep=sleep,
        )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_batch = max_batch

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        request_id = order.bank_request_id
        return await self._http.post(
            "submit",
            request_id,
            self.base_url + TRANSFERS_PATH,
            order.to_wire(),
            lambda answer: parse_answer(answer, request_id),
            BankRequestRefused,
            bank_request_id=request_id,
        )

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        # One request after the other: a caller wanting them in parallel sends smaller lists.
        outcomes: list[BankAnswer | BankRequestRefused] = []
        for start in range(0, len(orders), self.max_batch):
            outcomes.extend(await self._submit_batch(orders[start : start + self.max_batch]))
        return outcomes

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        return await self._http.query(
            bank_request_id,
            f"{self.base_url}{TRANSFERS_PATH}/{quote(bank_request_id, safe='')}",
            NOT_FOUND,
            lambda answer: parse_answer(answer, bank_request_id),
            BankRequestRefused,
            bank_request_id=bank_request_id,
        )

    async def _submit_batch(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        request_ids = [order.bank_request_id for order in orders]
        return await self._http.post(
            "submit_many",
            f"{len(request_ids)} orders from {request_ids[0]}",
            self.base_url + BATCH_PATH,
            {"transfers": [order.to_wire() for order in orders]},
            lambda answer: parse_batch_answer(answer, request_ids),
            BankRequestRefused,
            bank_request_id=request_ids[0],
            orders=len(request_ids),
        )
