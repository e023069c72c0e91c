"""WeChat Pay APIv3 as the adapter calls it: prepay (native, JSAPI), refund, refund query; and
as reconciliation calls it: the trade bill (``/v3/bill/tradebill``) and its download.

A request counts only when its ``Authorization`` verifies under the registered merchant's key
(by ``serial_no``) within five minutes; every answer, refusals included, is signed with the
platform key (``Wechatpay-*`` headers), as WeChat Pay signs its own. Refusals are
``{"code": …, "message": …}`` with WeChat Pay's codes: 401 SIGN_ERROR, 400 PARAM_ERROR /
INVALID_REQUEST, 404 RESOURCE_NOT_EXISTS / ORDER_NOT_EXIST, 403 for a trade in the wrong state.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from fundhub.channel_simulator import notices
from fundhub.channel_simulator.bill_desk import parse_day
from fundhub.channel_simulator.bills import wechatpay_bill
from fundhub.channel_simulator.keys import WechatPayMerchant
from fundhub.channel_simulator.simulation import Simulation
from fundhub.channel_simulator.trades import Conflict, NotFound, Refund, Trade, TradeError
from fundhub.channels import wechatpay
from fundhub.channels.events import Channel
from fundhub.channels.wechatpay_http import JSAPI_PATH, NATIVE_PATH, REFUNDS_PATH
from fundhub.common.clock import utcnow
from fundhub.reconciliation.wechatpay_bill_http import DOWNLOAD_PATH as BILL_DOWNLOAD_PATH
from fundhub.reconciliation.wechatpay_bill_http import TRADEBILL_PATH

_MAX_BODY = 16 * 1024


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _trade_error(exc: TradeError) -> Refused:
    if isinstance(exc, NotFound):
        return Refused(
            404,
            "ORDER_NOT_EXIST" if exc.code == "ORDER_NOT_EXIST" else "RESOURCE_NOT_EXISTS",
            exc.message,
        )
    if isinstance(exc, Conflict):
        return Refused(400, "INVALID_REQUEST", exc.message)
    if exc.code == "TRADE_NOT_PAID":
        return Refused(403, "TRADE_ERROR", exc.message)
    return Refused(400, "INVALID_REQUEST", exc.message)


def refund_json(trade: Trade, refund: Refund) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": trade.transaction_id,
        "out_trade_no": trade.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": notices.rfc3339(refund.created_at),
        "status": refund.status.value,
        "amount": {
            "total": trade.total_fen,
            "refund": refund.amount_fen,
            "payer_total": trade.total_fen,
            "payer_refund": refund.amount_fen,
            "currency": "CNY",
        },
    }
    if refund.success_at is not None:
        answer["success_time"] = notices.rfc3339(refund.success_at)
    return answer


def wechatpay_router(simulation: Simulation) -> APIRouter:
    router = APIRouter(tags=["WeChat Pay APIv3"])
    keys = simulation.keys

    def signed(status: int, document: Mapping[str, Any]) -> Response:
        body = orjson.dumps(dict(document))
        headers = notices.sign_wechatpay(body, keys.platform_key, keys.platform_serial, utcnow())
        return Response(body, status_code=status, headers=headers.headers)

    def refusal(exc: Refused) -> Response:
        return signed(exc.status, {"code": exc.code, "message": exc.message})

    async def caller(request: Request) -> tuple[WechatPayMerchant, bytes]:
        """The merchant whose signature the request carries, and the body it signed."""
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise Refused(400, "PARAM_ERROR", "body too large")
        try:
            auth = wechatpay.parse_authorization(request.headers.get("authorization", ""))
        except ValueError as exc:
            raise Refused(401, "SIGN_ERROR", str(exc)) from None
        merchant = simulation.merchants.wechatpay.get(auth.mchid)
        if merchant is None or merchant.merchant_serial != auth.serial_no:
            raise Refused(401, "SIGN_ERROR", "unknown merchant or certificate serial")
        if abs(utcnow().timestamp() - int(auth.timestamp)) >= wechatpay.TIMESTAMP_TOLERANCE_S:
            raise Refused(401, "SIGN_ERROR", "timestamp out of range")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not auth.verifies(request.method, path, body, merchant.public_key()):
            raise Refused(401, "SIGN_ERROR", "signature verification failed")
        return merchant, body

    def json_body(body: bytes) -> dict[str, Any]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused(400, "PARAM_ERROR", "body is not JSON") from None
        if not isinstance(document, dict):
            raise Refused(400, "PARAM_ERROR", "body is not a JSON object")
        return document

    def field(document: Mapping[str, Any], name: str, kind: type = str) -> Any:
        value = document.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
            raise Refused(400, "PARAM_ERROR", f"{name}: missing or invalid")
        return value

    async def prepay(request: Request, jsapi: bool) -> Response:
        try:
            merchant, body = await caller(request)
            order = json_body(body)
            if field(order, "mchid") != merchant.mchid or field(order, "appid") != merchant.appid:
                raise Refused(400, "PARAM_ERROR", "appid and mchid do not match")
            amount = order.get("amount")
            if not isinstance(amount, dict) or amount.get("currency", "CNY") != "CNY":
                raise Refused(400, "PARAM_ERROR", "amount: missing or not CNY")
            openid = None
            if jsapi:
                payer = order.get("payer")
                openid = field(payer if isinstance(payer, dict) else {}, "openid")
            trade = simulation.book.create(
                Channel.WECHATPAY,
                merchant.appid,
                merchant.mchid,
                field(order, "out_trade_no"),
                field(amount, "total", int),
                field(order, "description"),
                field(order, "notify_url"),
                utcnow(),
                openid,
            )
        except Refused as exc:
            return refusal(exc)
        except TradeError as exc:
            return refusal(_trade_error(exc))
        if jsapi:
            return signed(200, {"prepay_id": "wx" + trade.transaction_id[-24:]})
        code = secrets.token_urlsafe(12)
        return signed(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={code}"})

    @router.post(NATIVE_PATH, summary="Native prepay: a code_url to show as a QR code")
    async def native(request: Request) -> Response:
        return await prepay(request, jsapi=False)

    @router.post(JSAPI_PATH, summary="JSAPI prepay: a prepay_id for wx.requestPayment")
    async def jsapi(request: Request) -> Response:
        return await prepay(request, jsapi=True)

    @router.post(REFUNDS_PATH, summary="Refund (idempotent by out_refund_no)")
    async def refund(request: Request) -> Response:
        try:
            merchant, body = await caller(request)
            order = json_body(body)
            amount = order.get("amount")
            if not isinstance(amount, dict) or amount.get("currency", "CNY") != "CNY":
                raise Refused(400, "PARAM_ERROR", "amount: missing or not CNY")
            out_trade_no = field(order, "out_trade_no")
            trade = simulation.book.get(Channel.WECHATPAY, out_trade_no)
            if trade.merchant_ref != merchant.mchid:
                raise Refused(404, "RESOURCE_NOT_EXISTS", "no such order for this merchant")
            if field(amount, "total", int) != trade.total_fen:
                raise Refused(400, "PARAM_ERROR", "amount.total is not the order's total")
            notify_url = order.get("notify_url")
            trade, made = simulation.refund(
                Channel.WECHATPAY,
                out_trade_no,
                field(order, "out_refund_no"),
                field(amount, "refund", int),
                str(order.get("reason") or ""),
                notify_url if isinstance(notify_url, str) and notify_url else None,
            )
        except Refused as exc:
            return refusal(exc)
        except TradeError as exc:
            return refusal(_trade_error(exc))
        return signed(200, refund_json(trade, made))

    @router.get(TRADEBILL_PATH, summary="A day's trade bill: its download URL and SHA1")
    async def tradebill(
        request: Request, bill_date: str = "", bill_type: str = "ALL", tar_type: str = ""
    ) -> Response:
        """Ready after 10:00 (GMT+8) the next day, or once the day is released (``/sim``);
        ``hash_value`` is the SHA1 of the bill unpacked, as WeChat Pay gives it."""
        try:
            merchant, _ = await caller(request)
            now = utcnow()
            try:
                day = parse_day(bill_date, now)
            except ValueError as exc:
                raise Refused(400, "PARAM_ERROR", str(exc)) from None
            if bill_type not in ("ALL", "REFUND"):
                raise Refused(
                    400, "PARAM_ERROR", "bill_type: ALL or REFUND (SUCCESS not simulated)"
                )
            if tar_type not in ("", "GZIP"):
                raise Refused(400, "PARAM_ERROR", "tar_type: GZIP or none")
            content = simulation.bills.file(
                Channel.WECHATPAY,
                merchant.mchid,
                day,
                bill_type,
                now,
                lambda rows: wechatpay_bill(rows, bill_type),
            )
            if content is None:
                raise Refused(400, "NO_STATEMENT_EXIST", "the bill of that day is not ready yet")
        except Refused as exc:
            return refusal(exc)
        digest = hashlib.sha1(content).hexdigest()  # WeChat Pay's choice, not a security one
        if tar_type == "GZIP":
            content = gzip.compress(content, mtime=0)
        name = f"{merchant.mchid}_{day:%Y%m%d}_{bill_type}.csv" + (".gz" if tar_type else "")
        token = simulation.bills.offer(Channel.WECHATPAY, merchant.mchid, name, content, now)
        url = str(request.base_url).rstrip("/") + f"{BILL_DOWNLOAD_PATH}?token={token}"
        return signed(200, {"hash_type": "SHA1", "hash_value": digest, "download_url": url})

    @router.get(BILL_DOWNLOAD_PATH, summary="A bill's download (signed request, raw answer)")
    async def bill_download(request: Request, token: str = "") -> Response:
        try:
            merchant, _ = await caller(request)
            download = simulation.bills.take(token, utcnow())
            if download is None or download.merchant_ref != merchant.mchid:
                raise Refused(404, "RESOURCE_NOT_EXISTS", "no such download, or it expired")
        except Refused as exc:
            return refusal(exc)
        return Response(download.content, media_type="application/octet-stream")

    @router.get(REFUNDS_PATH + "/{out_refund_no}", summary="A refund's state")
    async def query(request: Request, out_refund_no: str) -> Response:
        try:
            merchant, _ = await caller(request)
            trade, made = simulation.book.refund_of(Channel.WECHATPAY, out_refund_no)
            if trade.merchant_ref != merchant.mchid:
                raise Refused(404, "RESOURCE_NOT_EXISTS", "no such refund")
        except Refused as exc:
            return refusal(exc)
        except TradeError as exc:
            return refusal(_trade_error(exc))
        return signed(200, refund_json(trade, made))

    return router
