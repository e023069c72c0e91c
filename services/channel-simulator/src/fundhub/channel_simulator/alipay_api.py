"""Alipay's open API gateway (``POST /gateway.do``) as the adapter calls it:
``alipay.trade.precreate``, ``alipay.trade.refund``, ``alipay.trade.fastpay.refund.query``, and
``alipay.data.dataservice.bill.downloadurl.query`` (a day's trade bill: a 30-second URL whose
``GET /downloadBillFile.resource`` gives the zip).

A request counts only when its ``sign`` verifies under the registered app's key. Answers are
``{"<method>_response": {...}, "sign": "..."}`` signed with Alipay's key over the exact text of
the response object; like Alipay, the gateway's own refusals (a bad signature, a missing
parameter: codes 40001/40002) go unsigned, business refusals (40004 with a ``sub_code``) signed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from fundhub.channel_simulator.bill_desk import parse_day
from fundhub.channel_simulator.bills import alipay_bill, bill_name
from fundhub.channel_simulator.simulation import Simulation
from fundhub.channel_simulator.trades import Conflict, NotFound, RefundStatus, TradeError
from fundhub.channels import alipay
from fundhub.channels.alipay_http import PRECREATE, REFUND, REFUND_QUERY
from fundhub.channels.events import Channel
from fundhub.channels.notification import NotificationRefused
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.money import MoneyError, format_yuan, parse_yuan
from fundhub.reconciliation.alipay_bill_http import BILL_NOT_EXIST, BILL_URL_QUERY

GATEWAY_PATH = "/gateway.do"
BILL_DOWNLOAD_PATH = "/downloadBillFile.resource"
_JSON = "application/json;charset=utf-8"


class Refused(Exception):
    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_msg)
        self.node = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signed = code not in ("40001", "40002")


def _invalid(sub_code: str, sub_msg: str) -> Refused:
    return Refused("40002", "Invalid Arguments", sub_code, sub_msg)


def _business(sub_code: str, sub_msg: str) -> Refused:
    return Refused("40004", "Business Failed", sub_code, sub_msg)


def _trade_error(exc: TradeError) -> Refused:
    if isinstance(exc, NotFound):
        return _business("ACQ.TRADE_NOT_EXIST", exc.message)
    if isinstance(exc, Conflict):
        code = (
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
            if exc.code == "REFUND_NO_USED"
            else "ACQ.TRADE_HAS_SUCCESS"
        )
        return _business(code, exc.message)
    if exc.code == "TRADE_NOT_PAID":
        return _business("ACQ.TRADE_STATUS_ERROR", exc.message)
    if exc.code == "REFUND_TOO_MUCH":
        return _business("ACQ.REFUND_FEE_ERROR", exc.message)
    return _invalid("isv.invalid-parameter", exc.message)


def _text(biz: Mapping[str, Any], name: str) -> str:
    value = biz.get(name)
    if not isinstance(value, str) or not value:
        raise Refused("40001", "Missing Required Arguments", f"isv.missing-{name}", name)
    return value


def _fen(biz: Mapping[str, Any], name: str) -> int:
    try:
        return parse_yuan(_text(biz, name))
    except MoneyError:
        raise _invalid(f"isv.invalid-{name}", f"{name}: not an amount in yuan") from None


def alipay_router(simulation: Simulation) -> APIRouter:
    router = APIRouter(tags=["Alipay"])
    key = simulation.keys.alipay_key

    def answer(method: str, node: Mapping[str, Any], signed: bool = True) -> Response:
        if signed:
            return Response(alipay.signed_answer(method, node, key), media_type=_JSON)
        body = json.dumps({alipay.response_name(method): dict(node)}, ensure_ascii=False)
        return Response(body.encode(), media_type=_JSON)

    @router.post(GATEWAY_PATH, summary="Alipay's gateway: one form per call, its method named")
    async def gateway(request: Request) -> Response:
        raw = await request.body()
        method = "alipay.error"
        try:
            try:
                params = alipay.parse_form(raw)
            except NotificationRefused as exc:
                raise _invalid("isv.invalid-parameter", exc.reason) from None
            method = params.get("method", method)
            app = simulation.merchants.alipay.get(params.get("app_id", ""))
            if app is None:
                raise _invalid("isv.invalid-app-id", "no such app_id")
            if params.get("sign_type") != alipay.SIGN_TYPE or not alipay.request_verifies(
                params, app.public_key()
            ):
                raise _invalid("isv.invalid-signature", "验签出错")
            try:
                biz = json.loads(params.get("biz_content", ""))
            except ValueError:
                raise _invalid("isv.invalid-biz-content", "biz_content is not JSON") from None
            if not isinstance(biz, dict):
                raise _invalid("isv.invalid-biz-content", "biz_content is not an object")
            if method == PRECREATE:
                node = _precreate(simulation, app.app_id, app.seller_id, biz, params)
            elif method == REFUND:
                node = _refund(simulation, app.app_id, biz)
            elif method == REFUND_QUERY:
                node = _refund_query(simulation, app.app_id, biz)
            elif method == BILL_URL_QUERY:
                node = _bill_url(simulation, app.seller_id, biz, str(request.base_url))
            else:
                raise _invalid("isv.invalid-method", f"method {method} is not simulated")
        except Refused as exc:
            return answer(method, exc.node, exc.signed)
        except TradeError as exc:
            refused = _trade_error(exc)
            return answer(method, refused.node, refused.signed)
        return answer(method, {"code": "10000", "msg": "Success", **node})

    @router.get(BILL_DOWNLOAD_PATH, summary="A bill zip's download (a 30-second URL)")
    async def bill_download(token: str = "") -> Response:
        download = simulation.bills.take(token, utcnow())
        if download is None or download.channel is not Channel.ALIPAY:
            return Response(b"not found or expired", status_code=404, media_type="text/plain")
        disposition = f"attachment; filename*=UTF-8''{quote(download.name)}"
        return Response(
            download.content,
            media_type="application/zip",
            headers={"Content-Disposition": disposition},
        )

    return router


def _bill_url(
    simulation: Simulation, seller_id: str, biz: Mapping[str, Any], base_url: str
) -> dict[str, Any]:
    """The bill of ``bill_date`` (trade only): ready after 10:00 the next day, or released."""
    if biz.get("bill_type") != "trade":
        raise _invalid("isv.invalid-bill-type", "bill_type: trade (signcustomer not simulated)")
    now = utcnow()
    try:
        day = parse_day(str(biz.get("bill_date", "")), now)
    except ValueError as exc:
        raise _invalid("isv.invalid-bill-date", str(exc)) from None
    content = simulation.bills.file(
        Channel.ALIPAY,
        seller_id,
        day,
        "trade",
        now,
        lambda rows: alipay_bill(rows, seller_id, day)[1],
    )
    if content is None:
        raise _business(BILL_NOT_EXIST, "账单不存在")
    name = bill_name(seller_id, day)
    token = simulation.bills.offer(Channel.ALIPAY, seller_id, name, content, now)
    url = (
        base_url.rstrip("/") + f"{BILL_DOWNLOAD_PATH}?token={token}&downloadFileName={quote(name)}"
    )
    return {"bill_download_url": url}


def _precreate(
    simulation: Simulation,
    app_id: str,
    seller_id: str,
    biz: Mapping[str, Any],
    params: Mapping[str, str],
) -> dict[str, Any]:
    notify_url = params.get("notify_url")
    if not notify_url:
        raise Refused("40001", "Missing Required Arguments", "isv.missing-notify-url", "notify_url")
    trade = simulation.book.create(
        Channel.ALIPAY,
        app_id,
        seller_id,
        _text(biz, "out_trade_no"),
        _fen(biz, "total_amount"),
        _text(biz, "subject"),
        notify_url,
        utcnow(),
    )
    return {
        "out_trade_no": trade.out_trade_no,
        "qr_code": f"https://qr.alipay.com/{secrets.token_urlsafe(12)}",
    }


def _own_trade(simulation: Simulation, app_id: str, out_trade_no: str) -> None:
    if simulation.book.get(Channel.ALIPAY, out_trade_no).app_id != app_id:
        raise _business("ACQ.TRADE_NOT_EXIST", "no such trade for this app")


def _refund(simulation: Simulation, app_id: str, biz: Mapping[str, Any]) -> dict[str, Any]:
    out_trade_no = _text(biz, "out_trade_no")
    _own_trade(simulation, app_id, out_trade_no)
    out_request_no = str(biz.get("out_request_no") or out_trade_no)  # Alipay's default
    known = simulation.book.get(Channel.ALIPAY, out_trade_no).refunds.get(out_request_no)
    trade, refund = simulation.refund(
        Channel.ALIPAY,
        out_trade_no,
        out_request_no,
        _fen(biz, "refund_amount"),
        str(biz.get("refund_reason") or ""),
        None,
    )
    assert refund.success_at is not None
    return {
        "trade_no": trade.transaction_id,
        "out_trade_no": trade.out_trade_no,
        "buyer_logon_id": "159****0000",
        "fund_change": "N" if known is not None else "Y",  # a retry moves no money again
        "refund_fee": format_yuan(trade.refunded_done_fen),
        "gmt_refund_pay": format_bank_time(refund.success_at),
    }


def _refund_query(simulation: Simulation, app_id: str, biz: Mapping[str, Any]) -> dict[str, Any]:
    out_trade_no = _text(biz, "out_trade_no")
    out_request_no = _text(biz, "out_request_no")
    _own_trade(simulation, app_id, out_trade_no)
    trade = simulation.book.get(Channel.ALIPAY, out_trade_no)
    node: dict[str, Any] = {
        "trade_no": trade.transaction_id,
        "out_trade_no": out_trade_no,
        "out_request_no": out_request_no,
    }
    refund = trade.refunds.get(out_request_no)
    if refund is not None and refund.status is RefundStatus.SUCCESS:
        node.update(
            total_amount=format_yuan(trade.total_fen),
            refund_amount=format_yuan(refund.amount_fen),
            refund_status="REFUND_SUCCESS",
        )
    return node
