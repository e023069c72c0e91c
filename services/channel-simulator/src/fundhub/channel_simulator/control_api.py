"""The test and demo side (``/sim``): the simulator's public keys, the merchants it serves, and
the payer's actions: pay an order, let it time out, send its notice again.

    GET  /sim/keys                                  public keys and serial, to register it
    PUT  /sim/wechatpay/merchants/{mchid}           a merchant (its key, its APIv3 key)
    PUT  /sim/alipay/apps/{app_id}                  an app (its key, its seller)
    POST /sim/{wechatpay|alipay}/pay/{out_trade_no}         the payer pays: a notice follows
         ?paidAt=ISO-8601                                   ...at that past time (a late notice)
    POST /sim/alipay/close/{out_trade_no}                   an unpaid trade times out
    POST /sim/{wechatpay|alipay}/notify/{out_trade_no}      the payment's notice once more
    GET  /sim/{wechatpay|alipay}/trades/{out_trade_no}      a trade and its refunds
    GET|POST /sim/behaviour       retries' time factor, duplicates, delays, refund outcomes
    GET  /sim/stats, /sim/deliveries                 what was sent, and how it fared
    PUT  /sim/bills/{wechatpay|alipay}/{date}       issue the day's bills now (before 10:00
         {"discrepancies": [...], "merchantRef": …, "feePpm": …}   the next day), with injected
                                                    discrepancies; again: a corrected bill
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fundhub.channel_simulator.bills import DEFAULT_FEE_PPM, Discrepancy
from fundhub.channel_simulator.keys import AlipayApp, WechatPayMerchant
from fundhub.channel_simulator.notifier import Behaviour
from fundhub.channel_simulator.simulation import Simulation
from fundhub.channel_simulator.trades import Conflict, NotFound, Trade, TradeError
from fundhub.channels.events import Channel
from fundhub.common.clock import utcnow

_CHANNELS = {"wechatpay": Channel.WECHATPAY, "alipay": Channel.ALIPAY}


def _channel(name: str) -> Channel:
    channel = _CHANNELS.get(name)
    if channel is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no channel {name}")
    return channel


def _trade_call(call: Any, *args: Any) -> tuple[Trade, bool]:
    try:
        result: tuple[Trade, bool] = call(*args)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    except TradeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, exc.message) from None
    return result


class BillRelease(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    discrepancies: list[Discrepancy] = Field(default_factory=list, max_length=10_000)
    merchant_ref: str | None = None
    fee_ppm: int = Field(default=DEFAULT_FEE_PPM, ge=0, le=1_000_000)


PAID_AT = Query(alias="paidAt", description="when the payer paid (ISO 8601 with an offset)")
_OLDEST_PAYMENT = timedelta(days=30)


def _past(moment: datetime) -> datetime:
    """A payment time the channel could report: aware, not ahead, at most 30 days back."""
    if moment.tzinfo is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "paidAt: an offset is required")
    now = utcnow()
    if not now - _OLDEST_PAYMENT <= moment <= now:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "paidAt: within the last 30 days")
    return moment


def control_router(simulation: Simulation) -> APIRouter:
    router = APIRouter(prefix="/sim", tags=["simulator control"])
    notifier = simulation.notifier

    @router.get("/keys", summary="The simulator's public keys (WeChat Pay platform, Alipay)")
    async def keys() -> dict[str, Any]:
        return simulation.keys.public()

    @router.put("/wechatpay/merchants/{mchid}", summary="Serve a WeChat Pay merchant")
    async def put_wechatpay_merchant(mchid: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            merchant = WechatPayMerchant.model_validate({**body, "mchid": mchid})
            simulation.merchants.add_wechatpay(merchant)
        except (ValidationError, ValueError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return {"mchid": merchant.mchid, "appid": merchant.appid}

    @router.put("/alipay/apps/{app_id}", summary="Serve an Alipay app")
    async def put_alipay_app(app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            app = AlipayApp.model_validate({**body, "appId": app_id})
            simulation.merchants.add_alipay(app)
        except (ValidationError, ValueError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return {"appId": app.app_id, "sellerId": app.seller_id}

    @router.post("/{channel}/pay/{out_trade_no}", summary="The payer pays; the notice follows")
    async def pay(
        channel: str, out_trade_no: str, paid_at: Annotated[datetime | None, PAID_AT] = None
    ) -> dict[str, Any]:
        """``paidAt``: the payment was made then (up to 30 days ago), its notice only now, as
        when the channel's first deliveries failed: a demo or a test of the T+1 cut-off."""
        if paid_at is not None:
            paid_at = _past(paid_at)
        trade, paid_now = _trade_call(simulation.pay, _channel(channel), out_trade_no, paid_at)
        return {**trade.to_json(), "paidNow": paid_now}

    @router.post("/alipay/close/{out_trade_no}", summary="An unpaid Alipay trade times out")
    async def close(out_trade_no: str) -> dict[str, Any]:
        trade, closed_now = _trade_call(simulation.close, Channel.ALIPAY, out_trade_no)
        return {**trade.to_json(), "closedNow": closed_now}

    @router.post("/{channel}/notify/{out_trade_no}", summary="The payment's notice, once more")
    async def notify_again(channel: str, out_trade_no: str) -> dict[str, Any]:
        trade, _ = _trade_call(
            lambda c, o: (simulation.book.get(c, o), False), _channel(channel), out_trade_no
        )
        if not trade.paid:
            raise HTTPException(status.HTTP_409_CONFLICT, "the trade is not paid")
        simulation.notify_paid(trade)
        return trade.to_json()

    @router.get("/{channel}/trades/{out_trade_no}", summary="A trade and its refunds")
    async def trade(channel: str, out_trade_no: str) -> dict[str, Any]:
        found, _ = _trade_call(
            lambda c, o: (simulation.book.get(c, o), False), _channel(channel), out_trade_no
        )
        return found.to_json()

    @router.put("/bills/{channel}/{bill_date}", summary="Issue a day's bills now")
    async def release_bills(channel: str, bill_date: str, body: BillRelease) -> dict[str, Any]:
        """From the book as it stands, with the discrepancies (drop, add, amount, status,
        duplicate, fee) applied to ``merchantRef``'s bill (the mchid or the Alipay seller id;
        needed only when the channel serves more than one merchant)."""
        of = _channel(channel)
        try:
            day = date.fromisoformat(bill_date)
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "date: yyyy-MM-dd") from None
        if of is Channel.WECHATPAY:
            merchants = {m.mchid: m.appid for m in simulation.merchants.wechatpay.values()}
        else:
            merchants = {a.seller_id: a.app_id for a in simulation.merchants.alipay.values()}
        try:
            lines = simulation.bills.release(
                of, day, merchants, body.discrepancies, body.merchant_ref, body.fee_ppm
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return {"channel": of.value, "date": day.isoformat(), "lines": lines}

    @router.get("/behaviour", summary="This run's behaviour")
    async def behaviour() -> dict[str, Any]:
        return notifier.behaviour.to_json()

    @router.post("/behaviour", summary="Change the behaviour (fields left out keep theirs)")
    async def set_behaviour(body: dict[str, Any]) -> dict[str, Any]:
        try:
            updated = Behaviour.model_validate({**notifier.behaviour.to_json(), **body})
        except ValidationError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        notifier.set_behaviour(updated)
        return updated.to_json()

    @router.get("/stats", summary="Notices sent, retried, delivered, given up")
    async def stats() -> dict[str, Any]:
        return {
            **notifier.stats.to_json(),
            "trades": len(simulation.book),
            "pendingTasks": notifier.pending,
            "behaviour": notifier.behaviour.to_json(),
        }

    @router.get("/deliveries", summary="The latest deliveries, newest last")
    async def deliveries(limit: int = 100) -> list[dict[str, Any]]:
        kept = list(notifier.stats.deliveries)
        return [d.to_json() for d in kept[-max(1, min(limit, 10_000)) :]]

    return router
