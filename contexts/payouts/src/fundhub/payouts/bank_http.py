"""The bank's JSON-over-HTTP payout API (``bank/v1``): the ``BankPayoutAdapter`` the worker uses.

The rules every adapter keeps are in ``fundhub.payouts.bank``; the HTTP and its retries are
``fundhub.bank_client``'s; this module only says which requests and how their answers read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

import aiohttp
import orjson

from fundhub.bank_client.exchange import JsonExchange, Reply, never_received, read_reply
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


def _refused(reply: Reply) -> BankRequestRefused:
    return BankRequestRefused(reply.status, refusal_reason(reply.parsed, reply.excerpt))


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
        url = self.base_url + TRANSFERS_PATH
        body = orjson.dumps(order.to_wire())
        request_id = order.bank_request_id

        async def once() -> BankAnswer:
            reply = await self._http.send("POST", url, body)
            return read_reply(reply, lambda answer: parse_answer(answer, request_id), _refused)

        return await self._http.call("submit", request_id, once, bank_request_id=request_id)

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

        async def once() -> BankAnswer | None:
            reply = await self._http.send("GET", url)
            if never_received(reply, NOT_FOUND):
                return None
            return read_reply(reply, lambda answer: parse_answer(answer, bank_request_id), _refused)

        return await self._http.call(
            "query", bank_request_id, once, bank_request_id=bank_request_id
        )

    async def _submit_batch(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        request_ids = [order.bank_request_id for order in orders]
        url = self.base_url + BATCH_PATH
        body = orjson.dumps({"transfers": [order.to_wire() for order in orders]})

        async def once() -> list[BankAnswer | BankRequestRefused]:
            reply = await self._http.send("POST", url, body)
            return read_reply(
                reply, lambda answer: parse_batch_answer(answer, request_ids), _refused
            )

        return await self._http.call(
            "submit_many",
            f"{len(request_ids)} orders from {request_ids[0]}",
            once,
            bank_request_id=request_ids[0],
            orders=len(request_ids),
        )
