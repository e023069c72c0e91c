"""The depository's refund debits over HTTP (``orders.refund_debits``' protocol), over the
process's one connection pool to the bank; the HTTP and its retries are ``fundhub.bank_client``'s.

Timeouts, transport errors, 5xx, 408, 429 and unreadable answers are retried ``retries`` times
under the same ``refund_request_id`` (the bank dedupes it), then DebitUnavailable; any other 4xx
is the bank's refusal of the request: DebitRefused, not retried.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import orjson

from fundhub.bank_client.exchange import JsonExchange, Reply, never_received, read_reply
from fundhub.orders.refund_debits import (
    NOT_FOUND,
    REFUND_DEBITS_PATH,
    DebitRefused,
    DebitReport,
    DebitUnavailable,
    RefundDebit,
    parse_answer,
    refusal_reason,
)


def _refused(reply: Reply) -> DebitRefused:
    return DebitRefused(reply.status, refusal_reason(reply.parsed, reply.excerpt))


class HttpRefundDebits:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        self._http = JsonExchange(
            session,
            event="refund_debit_attempt_failed",
            unavailable=DebitUnavailable,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
        )
        self._url = base_url.rstrip("/") + REFUND_DEBITS_PATH

    async def register(self, debit: RefundDebit) -> DebitReport:
        body = orjson.dumps(debit.to_wire())
        refund_id = debit.refund_id

        async def once() -> DebitReport:
            reply = await self._http.send("POST", self._url, body)
            return read_reply(reply, lambda answer: parse_answer(answer, refund_id), _refused)

        return await self._http.call("register", refund_id, once, refund_id=refund_id)

    async def query(self, refund_id: str) -> DebitReport | None:
        url = f"{self._url}/{quote(refund_id, safe='')}"

        async def once() -> DebitReport | None:
            reply = await self._http.send("GET", url)
            if never_received(reply, NOT_FOUND):
                return None
            return read_reply(reply, lambda answer: parse_answer(answer, refund_id), _refused)

        return await self._http.call("query", refund_id, once, refund_id=refund_id)
