"""WeChat Pay APIv3 over HTTP: prepay (native or JSAPI), refund and refund query, for the port
``ChannelPayments``.

Every request is signed with the merchant's API key (``Authorization:
WECHATPAY2-SHA256-RSA2048 …``); every answer is taken only once its ``Wechatpay-Signature``
verifies under a platform key of the app, fresh within five minutes, as a notification would
be. Timeouts, connection errors, 5xx, 429 and answers that do not verify are retried with the
same ids; other 4xx are final (``ChannelRefused`` with WeChat Pay's code).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from fundhub.channels import wechatpay
from fundhub.channels.apps import AppKeys, WechatPayKeys
from fundhub.channels.calls import Retry, excerpt, exchange, retried
from fundhub.channels.events import Channel
from fundhub.channels.notification import NotificationRefused, strict_object
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

NATIVE_PATH = "/v3/pay/transactions/native"
JSAPI_PATH = "/v3/pay/transactions/jsapi"
REFUNDS_PATH = "/v3/refund/domestic/refunds"
_RETRIED_4XX = frozenset({408, 429})
_JSON = "application/json"


def _nonce() -> str:
    return secrets.token_hex(16).upper()


class WechatPayHttp:
    """The adapter for one process: the session and the app store are the caller's."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
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
        self.base_url = base_url.rstrip("/")
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
            raise ChannelRefused("PARAM_ERROR", "WeChat Pay takes CNY only")
        body: dict[str, Any] = {
            "appid": keys.app.app_id,
            "mchid": keys.mchid,
            "description": order.description,
            "out_trade_no": order.out_trade_no,
            "notify_url": order.notify_url,
            "amount": {"total": order.amount_fen, "currency": "CNY"},
        }
        if order.payer_openid is None:
            answer = await self._call(keys, "POST", NATIVE_PATH, body, order.out_trade_no)
            code_url = answer.get("code_url")
            if not isinstance(code_url, str) or not code_url:
                raise ChannelRefused("BAD_ANSWER", "prepay answer without code_url")
            return PaymentParams(Channel.WECHATPAY, {"code_url": code_url})
        body["payer"] = {"openid": order.payer_openid}
        answer = await self._call(keys, "POST", JSAPI_PATH, body, order.out_trade_no)
        prepay_id = answer.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise ChannelRefused("BAD_ANSWER", "prepay answer without prepay_id")
        return PaymentParams(Channel.WECHATPAY, self._jsapi_params(keys, prepay_id))

    def _jsapi_params(self, keys: WechatPayKeys, prepay_id: str) -> dict[str, str]:
        """What the payer's WeChat client needs for wx.requestPayment, signed by the merchant."""
        assert keys.merchant_private_key is not None
        timestamp, nonce = str(int(self._clock().timestamp())), _nonce()
        package = f"prepay_id={prepay_id}"
        return {
            "appId": keys.app.app_id,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": wechatpay.jsapi_pay_sign(
                keys.app.app_id, timestamp, nonce, package, keys.merchant_private_key
            ),
        }

    async def refund(self, refund: RefundOrder) -> RefundAnswer:
        keys = await self._keys(refund.app_id)
        body = {
            "out_trade_no": refund.out_trade_no,
            "out_refund_no": refund.out_refund_no,
            "reason": refund.reason,
            "notify_url": refund.notify_url,
            "amount": {"refund": refund.refund_fen, "total": refund.total_fen, "currency": "CNY"},
        }
        answer = await self._call(keys, "POST", REFUNDS_PATH, body, refund.out_refund_no)
        return _refund_answer(answer, refund.out_refund_no)

    async def query_refund(self, app_id: str, out_refund_no: str) -> RefundAnswer:
        keys = await self._keys(app_id)
        path = f"{REFUNDS_PATH}/{quote(out_refund_no, safe='')}"
        try:
            answer = await self._call(keys, "GET", path, None, out_refund_no)
        except ChannelRefused as exc:
            if exc.code == "RESOURCE_NOT_EXISTS":
                raise ChannelRefused(REFUND_NOT_FOUND, exc.message) from None
            raise
        return _refund_answer(answer, out_refund_no)

    async def _keys(self, app_id: str) -> WechatPayKeys:
        keys = await self._apps.wechatpay(app_id)
        if keys is None or keys.merchant_private_key is None or keys.app.merchant_serial is None:
            raise ChannelRefused(
                "APP_NOT_CONFIGURED",
                f"no WeChat Pay app {app_id} with a merchant key (fundhub channel add wechatpay)",
            )
        return keys

    async def _call(
        self,
        keys: WechatPayKeys,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        subject: str,
    ) -> dict[str, Any]:
        raw = b"" if body is None else orjson.dumps(body)
        return await retried(
            f"wechatpay {method} {path.rsplit('/', 1)[0]} {subject}",
            lambda: self._attempt(keys, method, path, raw),
            retries=self._retries,
            backoff_s=self._backoff_s,
            max_backoff_s=self._max_backoff_s,
            sleep=self._sleep,
        )

    async def _attempt(
        self, keys: WechatPayKeys, method: str, path: str, raw: bytes
    ) -> dict[str, Any]:
        assert keys.merchant_private_key is not None and keys.app.merchant_serial is not None
        timestamp = str(int(self._clock().timestamp()))
        headers = {
            "Accept": _JSON,
            "Authorization": wechatpay.authorization(
                keys.mchid,
                keys.app.merchant_serial,
                keys.merchant_private_key,
                method,
                path,
                raw,
                timestamp,
                _nonce(),
            ),
        }
        if method != "GET":
            headers["Content-Type"] = _JSON
        status, answer_headers, answer = await exchange(
            self._session,
            method,
            self.base_url + path,
            timeout_s=self._timeout_s,
            data=raw if method != "GET" else None,
            headers=headers,
        )
        if status >= 500 or status in _RETRIED_4XX:
            raise Retry(f"HTTP {status}: {excerpt(answer)}")
        self._verify(keys, answer_headers, answer, status)
        try:
            document = strict_object(answer, "answer", max_keys=64) if answer else {}
        except NotificationRefused:
            raise Retry(f"HTTP {status}: not a JSON object") from None
        if status >= 400:
            code, message = document.get("code"), document.get("message")
            raise ChannelRefused(str(code or f"HTTP_{status}"), str(message or "")[:200])
        return document

    def _verify(
        self, keys: WechatPayKeys, headers: dict[str, str], body: bytes, status: int
    ) -> None:
        """An answer counts only when WeChat Pay signed it: anything else may be forged on the
        way, and is asked again."""
        try:
            signed = wechatpay.read_signed_headers(headers)
            wechatpay.check_timestamp(signed, self._clock())
        except NotificationRefused as exc:
            raise Retry(f"HTTP {status}: unverifiable answer ({exc.reason})") from None
        key = keys.platform_keys.get(signed.serial)
        if key is None or not signed.verifies(body, key):
            raise Retry(f"HTTP {status}: the answer's signature does not verify")


def _refund_answer(document: dict[str, Any], out_refund_no: str) -> RefundAnswer:
    status = document.get("status")
    try:
        state = RefundState(str(status))
    except ValueError:
        raise ChannelRefused("BAD_ANSWER", f"refund status {status!r}") from None
    if document.get("out_refund_no") != out_refund_no:
        raise ChannelRefused("BAD_ANSWER", "the answer is about another refund")
    refund_id = document.get("refund_id")
    return RefundAnswer(out_refund_no, refund_id if isinstance(refund_id, str) else None, state)
