"""The reconciler's daily fetch against real Postgres: each source's file of the day through
the fetch seam (here serving the bytes the channel simulator's bill writer makes, or saying
"not ready" as the download APIs do before publishing), imported and reconciled once; a day
that has a file is not fetched again."""

from __future__ import annotations

from datetime import date

from support.env import ModuleEnv
from support.recon_world import Order, add_orders, at

from fundhub.channel_simulator.bills import BillRow, channel_fee, wechatpay_bill
from fundhub.reconciler.daily import fetch_day
from fundhub.reconciliation.download_http import NOT_READY, StatementUnavailable
from fundhub.reconciliation.statement import Source

DAY = date(2026, 7, 1)


async def test_a_day_is_fetched_once_and_a_source_not_ready_is_asked_again(env: ModuleEnv) -> None:
    orders = [Order(f"ORDF{i}", 3000 + i, paid_at=at(DAY, 9, i)) for i in range(7)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, orders)
    bill = wechatpay_bill(
        [
            BillRow("PAYMENT", o.paid_at or at(DAY, 9), "wx", "1900000001", o.order_id,
                    "42" + o.order_id, o.amount, "goods", "SUCCESS",
                    fee_fen=channel_fee(o.amount, 6000))
            for o in orders
        ]
    )  # fmt: skip
    asked: list[tuple[Source, date]] = []
    ready = {Source.WECHATPAY}

    async def fetch(source: Source, day: date) -> tuple[str, bytes]:
        asked.append((source, day))
        if source not in ready:
            raise StatementUnavailable(NOT_READY, "not published yet")
        return f"{source}-{day}.csv", bill

    sources = [Source.WECHATPAY, Source.BANK]
    first = await fetch_day(env.pool, fetch, env.settings, DAY, sources)
    assert first == {Source.WECHATPAY: "imported", Source.BANK: "not-ready"}
    runs = await env.pool.fetch("SELECT counts FROM recon_runs WHERE day = $1", DAY)
    assert [r["counts"]["matched"] for r in runs] == [7]
    again = await fetch_day(env.pool, fetch, env.settings, DAY, sources)
    assert again == {Source.WECHATPAY: "known", Source.BANK: "not-ready"}
    assert asked.count((Source.WECHATPAY, DAY)) == 1
    assert await env.pool.fetchval("SELECT count(*) FROM recon_runs WHERE day = $1", DAY) == 1
