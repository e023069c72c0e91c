"""A payment channel played minimally over real HTTP, for the orders tests until the channel
simulator lands: a server that creates payments and takes refunds (idempotent by
out_trade_no / out_refund_no, as the channels are), and an adapter implementing
``fundhub.channels.ports.ChannelPayments`` against it. TEST code: it speaks a made-up JSON
protocol, not WeChat Pay's or Alipay's (the channels context's adapters speak those).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from fundhub.channels.events import Channel
from fundhub.channels.ports import (
    REFUND_NOT_FOUND,
    ChannelRefused,
    ChannelUnavailable,
    PaymentOrder,
    PaymentParams,
    RefundAnswer,
    RefundOrder,
    RefundState,
)
from support.receivers import serving

UP, DOWN, REFUSING = "up", "down", "refusing"


@dataclass
class ChannelServer:
    """What the channel holds, and how it behaves now (``mode``, ``refund_status``)."""

    mode: str = UP
    refund_status: str = RefundState.PROCESSING.value
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/payments", self._pay)
        app.router.add_post("/refunds", self._refund)
        app.router.add_get("/refunds/{out_refund_no}", self._query)
        return app

    def _fault(self) -> web.Response | None:
        if self.mode == DOWN:
            return web.json_response({"code": "SYSTEM_ERROR"}, status=503)
        if self.mode == REFUSING:
            return web.json_response({"code": "INVALID_REQUEST", "message": "refused"}, status=400)
        return None

    async def _pay(self, request: web.Request) -> web.Response:
        self.calls["pay"] += 1
        fault = self._fault()
        if fault is not None:
            return fault
        body = await request.json()
        known = self.payments.setdefault(body["out_trade_no"], body)
        if known != body:
            message = "out_trade_no used with another order"
            return web.json_response({"code": "OUT_TRADE_NO_USED", "message": message}, status=400)
        params = {"code_url": f"weixin://wxpay/bizpayurl?pr={body['out_trade_no']}"}
        return web.json_response({"params": params})

    async def _refund(self, request: web.Request) -> web.Response:
        self.calls["refund"] += 1
        fault = self._fault()
        if fault is not None:
            return fault
        body = await request.json()
        known = self.refunds.get(body["out_refund_no"])
        if known is None:
            known = {
                **body,
                "refund_id": f"R{next(self.numbers):08d}",
                "status": self.refund_status,
            }
            self.refunds[body["out_refund_no"]] = known
        return web.json_response({"refund_id": known["refund_id"], "status": known["status"]})

    async def _query(self, request: web.Request) -> web.Response:
        self.calls["query"] += 1
        fault = self._fault()
        if fault is not None:
            return fault
        known = self.refunds.get(request.match_info["out_refund_no"])
        if known is None:
            return web.json_response({"code": REFUND_NOT_FOUND}, status=404)
        return web.json_response({"refund_id": known["refund_id"], "status": known["status"]})

    def finish(self, out_refund_no: str, status: str) -> None:
        """The channel's refund reaches ``status`` (what later queries answer)."""
        self.refunds[out_refund_no]["status"] = status


class HttpChannel:
    """``ChannelPayments`` over the test server's protocol (TEST code). Without a session it
    opens one on first use, in the loop that uses it (a gateway served on a thread)."""

    def __init__(
        self, base_url: str, channel: Channel, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._session = session
        self._base = base_url
        self._channel = channel

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method, self._base + path, json=body, timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                answer: dict[str, Any] = await response.json()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ChannelUnavailable(repr(exc)) from exc
        if status >= 500:
            raise ChannelUnavailable(f"HTTP {status}")
        if status >= 400:
            raise ChannelRefused(answer.get("code", "?"), answer.get("message", ""))
        return answer

    async def create_payment(self, order: PaymentOrder) -> PaymentParams:
        answer = await self._call(
            "POST",
            "/payments",
            {
                "app_id": order.app_id,
                "out_trade_no": order.out_trade_no,
                "amount": order.amount_fen,
                "currency": order.currency,
                "description": order.description,
                "notify_url": order.notify_url,
            },
        )
        return PaymentParams(self._channel, answer["params"])

    async def refund(self, refund: RefundOrder) -> RefundAnswer:
        answer = await self._call(
            "POST",
            "/refunds",
            {
                "app_id": refund.app_id,
                "out_trade_no": refund.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "refund": refund.refund_fen,
                "total": refund.total_fen,
            },
        )
        return RefundAnswer(
            refund.out_refund_no, answer["refund_id"], RefundState(answer["status"])
        )

    async def query_refund(
        self, channel: Channel, app_id: str, out_refund_no: str, out_trade_no: str | None = None
    ) -> RefundAnswer:
        answer = await self._call("GET", f"/refunds/{out_refund_no}", None)
        return RefundAnswer(out_refund_no, answer["refund_id"], RefundState(answer["status"]))


@dataclass
class Served:
    server: ChannelServer
    url: str
    adapters: dict[Channel, HttpChannel]  # for use in the test's own loop


@asynccontextmanager
async def channel_serving() -> AsyncIterator[Served]:
    """The server (for both channels), its URL and an adapter per channel."""
    server = ChannelServer()
    async with serving(server.app()) as url, aiohttp.ClientSession() as session:
        yield Served(server, url, {c: HttpChannel(url, c, session) for c in Channel})
