"""The depository's refund debits over HTTP (``orders.refund_debits``' protocol), over the
process's one connection pool to the bank; the HTTP and its retries are ``fundhub.bank_client``'s.

Timeouts, transport errors, 5xx, 408, 429 and unreadable answers are retried ``retries`` times
under the same ``refund_request_id`` (the bank dedupes it), then DebitUnavailable; any other 4xx
is the bank's refusal of the request: DebitRefused, not retried.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from fundhub.bank_client.exchange import JsonExchange
from fundhub.orders.refund_debits import (
    NOT_FOUND,
    REFUND_DEBITS_PATH,
    DebitRefused,
    DebitReport,
    DebitUnavailable,
    RefundDebit,
    parse_answer,
)


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
        refund_id = debit.refund_id
        return await self._http.post(
            "register",
            refund_id,
            self._url,
            debit.to_wire(),
            lambda answer: parse_answer(answer, refund_id),
            DebitRefused,
            refund_id=refund_id,
        )

    async def query(self, refund_id: str) -> DebitReport | None:
        return await self._http.query(
            refund_id,
            f"{self._url}/{quote(refund_id, safe='')}",
            NOT_FOUND,
            lambda answer: parse_answer(answer, refund_id),
            DebitRefused,
            refund_id=refund_id,
        )
