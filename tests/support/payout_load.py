"""Clients that keep submitting payouts through an outage, as a careful client would.

Each payout is sent until it is accepted: a 503 (or no answer) is sent again, after a pause
that doubles, with the same ``requestId`` and body, signed anew (a new nonce: the first try's may already be used, when the
payout was written but its answer could not be made durable). Every try is recorded with when
it was sent and answered, so a test can say what was answered while a server was down.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from support.api import signed_headers

PAYOUTS_PATH = "/v1/payouts"


def payout_body(request_id: str, payer: str, amount: int, **extra: Any) -> bytes:
    """A valid ``POST /v1/payouts`` body (``extra``: optional fields, e.g. callbackUrl)."""
    return json.dumps(
        {
            "requestId": request_id,
            "supplierId": "SUP001",
            "payerAccountId": payer,
            "amount": amount,
            "currency": "CNY",
            "payee": {
                "accountName": "Supplier One",
                "accountNo": "6222000011112222",
                "bankName": "Ping An Bank",
            },
            **extra,
        }
    ).encode()


@dataclass(frozen=True)
class Try:
    """One request: sent (its headers on the wire, not queued for a connection here) and
    answered, in monotonic seconds."""

    request_id: str
    sent_at: float
    answered_at: float
    status: int  # 0: no answer (the connection failed)
    error_code: str | None

    @property
    def seconds(self) -> float:
        return self.answered_at - self.sent_at


@dataclass
class PayoutLoad:
    """A new payout every ``interval_s`` until ``stop()``, each sent until accepted on its own
    (so one waiting out an outage holds up none of the others); the payer and amount of each
    come round from ``payers`` and ``amounts``. Its own connections to ``gateway_url``, as many
    as there are payouts waiting (up to ``connections``, below the gateway's cap per address):
    a try's time is the gateway's, not a wait for a free connection here."""

    gateway_url: str
    key_id: str
    secret: str
    payers: list[str]
    callback_url: str | None = None
    interval_s: float = 0.1
    retry_pause_s: float = 0.25  # doubling with each try of a payout, up to retry_max_s
    retry_max_s: float = 4.0
    connections: int = 200
    amounts: tuple[int, ...] = (1_000, 2_500, 7_000, 12_345)
    tries: list[Try] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # requestId -> payId
    first_sent: dict[str, float] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _arrivals: asyncio.Task[None] | None = None
    _payouts: list[asyncio.Task[None]] = field(default_factory=list)
    _http: httpx.AsyncClient | None = None

    def start(self) -> None:
        limits = httpx.Limits(
            max_connections=self.connections,
            max_keepalive_connections=self.connections,
            keepalive_expiry=2.0,  # below the gateway's 5 s: never reuse one it is closing
        )
        self._http = httpx.AsyncClient(base_url=self.gateway_url, timeout=30, limits=limits)
        self._arrivals = asyncio.create_task(self._arrive())

    async def stop(self) -> None:
        """No new payouts; returns once every payout begun is accepted (or refused outright)."""
        self._stop.set()
        if self._arrivals is not None:
            await self._arrivals
        await asyncio.gather(*self._payouts)
        if self._http is not None:
            await self._http.aclose()

    async def _arrive(self) -> None:
        n = 0
        while not self._stop.is_set():
            request_id = f"load-{uuid.uuid4().hex}"
            extra = {"callbackUrl": self.callback_url} if self.callback_url else {}
            payer, amount = self.payers[n % len(self.payers)], self.amounts[n % len(self.amounts)]
            body = payout_body(request_id, payer, amount, **extra)
            self.first_sent[request_id] = time.monotonic()
            self._payouts.append(asyncio.create_task(self._until_accepted(request_id, body)))
            n += 1
            await asyncio.sleep(self.interval_s)

    async def _until_accepted(self, request_id: str, body: bytes) -> None:
        assert self._http is not None
        pause = self.retry_pause_s
        while True:
            headers = signed_headers(self.key_id, self.secret, "POST", PAYOUTS_PATH, None, body)
            headers["Content-Type"] = "application/json"
            sent = [time.monotonic()]

            async def trace(event: str, info: object, sent: list[float] = sent) -> None:
                if event == "http11.send_request_headers.started":
                    sent[0] = time.monotonic()  # on the wire: the gateway's time starts

            try:
                response = await self._http.post(
                    PAYOUTS_PATH, content=body, headers=headers, extensions={"trace": trace}
                )
            except httpx.HTTPError:
                self.tries.append(Try(request_id, sent[0], time.monotonic(), 0, None))
            else:
                answer: dict[str, Any] = response.json()
                status, code = response.status_code, answer.get("errorCode")
                self.tries.append(Try(request_id, sent[0], time.monotonic(), status, code))
                if status in (200, 202):
                    self.accepted[request_id] = answer["payId"]
                    return
                if status != 503:
                    self.unexpected.append(f"{status} {response.text[:300]}")
                    return
            await asyncio.sleep(pause)
            pause = min(self.retry_max_s, pause * 2)

    def sent_between(self, start: float, end: float) -> list[str]:
        """The payouts first sent in ``[start, end)`` (monotonic seconds)."""
        return [r for r, at in self.first_sent.items() if start <= at < end]
