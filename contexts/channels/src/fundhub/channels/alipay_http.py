"""Alipay's open API over HTTP: ``alipay.trade.precreate`` (a QR code to pay),
``alipay.trade.refund`` and ``alipay.trade.fastpay.refund.query``, for the port
``ChannelPayments``.

Each request is a form signed with the app's private key; each answer counts only once its
``sign`` verifies under Alipay's public key for the app. Alipay answers HTTP 200 for business
outcomes too: ``code`` ``10000`` is success, ``20000`` (and ``ACQ.SYSTEM_ERROR``) mean try
again, anything else is a refusal (``ChannelRefused`` with ``sub_code``). Alipay does not sign
its gateway-level refusals (``40001``/``40002``/``20001``: a missing or bad parameter or
signature), so those are believed unsigned; any other unsigned answer is asked again.

A refund answered ``fund_change: N`` may be a retry of one already made: the refund query
decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

from fundhub.channels import alipay
from fundhub.channels.apps import AlipayKeys, AppKeys
from fundhub.channels.calls import Retry, excerpt, exchange, retried
from fundhub.channels.events import Channel
from fundhub.channels.ports import (
    REFUND_NOT_FOUND,
    ChannelRefused,
    PaymentOrder,
    PaymentParams,
    RefundAnswer,
    RefundOrder,
    RefundState,
)
from fundhub.common.clock import utcnow
from fundhub.common.money import format_yuan

PRECREATE = "alipay.trade.precreate"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
CODE_SUCCESS = "10000"
_RETRIED_CODES = frozenset({"20000"})
_RETRIED_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"})
_UNSIGNED_REFUSALS = frozenset({"40001", "40002", "20001"})
_NOT_FOUND_SUB_CODES = frozenset({"ACQ.TRADE_NOT_EXIST"})


class AlipayHttp:
    """The adapter for one process: the session and the app store are the caller's."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway_url: str,
        apps: AppKeys,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session = session
        self.gateway_url = gateway_url
        self._apps = apps
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._clock = clock

    async def create_payment(self, order: PaymentOrder) -> PaymentParams:
        keys = await self._keys(order.app_id)
        if order.currency != "CNY":
            raise ChannelRefused("INVALID_PARAMETER", "Alipay takes CNY only")
        biz = {
            "out_trade_no": order.out_trade_no,
            "total_amount": format_yuan(order.amount_fen),
            "subject": order.description,
        }
        node = await self._call(keys, PRECREATE, biz, order.out_trade_no, order.notify_url)
        qr_code = node.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise ChannelRefused("BAD_ANSWER", "precreate answer without qr_code")
        return PaymentParams(Channel.ALIPAY, {"qr_code": qr_code})

    async def refund(self, refund: RefundOrder) -> RefundAnswer:
        keys = await self._keys(refund.app_id)
        biz = {
            "out_trade_no": refund.out_trade_no,
            "refund_amount": format_yuan(refund.refund_fen),
            "out_request_no": refund.out_refund_no,
            "refund_reason": refund.reason,
        }
        node = await self._call(keys, REFUND, biz, refund.out_refund_no)
        if node.get("fund_change") == "Y":
            trade_no = node.get("trade_no")
            return RefundAnswer(
                refund.out_refund_no,
                trade_no if isinstance(trade_no, str) else None,
                RefundState.SUCCESS,
            )
        return await self.query_refund(refund.app_id, refund.out_refund_no, refund.out_trade_no)

    async def query_refund(
        self, app_id: str, out_refund_no: str, out_trade_no: str | None = None
    ) -> RefundAnswer:
        if not out_trade_no:
            raise ValueError("Alipay's refund query needs the order's out_trade_no")
        keys = await self._keys(app_id)
        biz = {"out_trade_no": out_trade_no, "out_request_no": out_refund_no}
        try:
            node = await self._call(keys, REFUND_QUERY, biz, out_refund_no)
        except ChannelRefused as exc:
            if exc.code in _NOT_FOUND_SUB_CODES:
                raise ChannelRefused(REFUND_NOT_FOUND, exc.message) from None
            raise
        # Alipay's rule: without refund_status REFUND_SUCCESS the refund was not made.
        if node.get("refund_status") != "REFUND_SUCCESS":
            raise ChannelRefused(REFUND_NOT_FOUND, f"no refund {out_refund_no} of {out_trade_no}")
        if node.get("out_request_no", out_refund_no) != out_refund_no:
            raise ChannelRefused("BAD_ANSWER", "the answer is about another refund")
        trade_no = node.get("trade_no")
        return RefundAnswer(
            out_refund_no, trade_no if isinstance(trade_no, str) else None, RefundState.SUCCESS
        )

    async def _keys(self, app_id: str) -> AlipayKeys:
        keys = await self._apps.alipay(app_id)
        if keys is None or keys.app_private_key is None:
            raise ChannelRefused(
                "APP_NOT_CONFIGURED",
                f"no Alipay app {app_id} with an app private key (fundhub channel add alipay)",
            )
        return keys

    async def _call(
        self,
        keys: AlipayKeys,
        method: str,
        biz: dict[str, Any],
        subject: str,
        notify_url: str | None = None,
    ) -> dict[str, Any]:
        return await retried(
            f"alipay {method} {subject}",
            lambda: self._attempt(keys, method, biz, notify_url),
            retries=self._retries,
            backoff_s=self._backoff_s,
            max_backoff_s=self._max_backoff_s,
            sleep=self._sleep,
        )

    async def _attempt(
        self, keys: AlipayKeys, method: str, biz: dict[str, Any], notify_url: str | None
    ) -> dict[str, Any]:
        assert keys.app_private_key is not None
        # Signed anew each attempt: the timestamp is part of what is signed.
        params = alipay.request_params(
            keys.app.app_id, method, biz, keys.app_private_key, self._clock(), notify_url
        )
        status, _, body = await exchange(
            self._session, "POST", self.gateway_url, timeout_s=self._timeout_s, data=params
        )
        if status != 200:
            raise Retry(f"HTTP {status}: {excerpt(body)}")
        try:
            answer = alipay.read_answer(body, method)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Retry(f"unreadable answer ({exc})") from None
        code = answer.code
        if not answer.verifies(keys.alipay_public_key):
            if answer.sign is None and code in _UNSIGNED_REFUSALS:
                raise ChannelRefused(_code(answer.node), _message(answer.node))
            raise Retry(f"code {code}: the answer's signature does not verify")
        if code == CODE_SUCCESS:
            return answer.node
        if code in _RETRIED_CODES or answer.node.get("sub_code") in _RETRIED_SUB_CODES:
            raise Retry(f"code {code} {answer.node.get('sub_code', '')}")
        raise ChannelRefused(_code(answer.node), _message(answer.node))


def _code(node: dict[str, Any]) -> str:
    return str(node.get("sub_code") or node.get("code") or "UNKNOWN")


def _message(node: dict[str, Any]) -> str:
    return str(node.get("sub_msg") or node.get("msg") or "")[:200]
