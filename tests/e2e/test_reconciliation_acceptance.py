"""Issue 11's acceptance, the channels' part: a day of orders paid and refunded through the
platform (gateway, notify-ingest, payment-worker) and the channel simulator, then each channel's
bill of the day fetched from the simulator's download API as the reconciler fetches it (WeChat
Pay's signed two-step download, Alipay's gateway query): 0 discrepancies; then the same day's
WeChat Pay bill issued again with one injected difference of every class: exactly those, with
their counts and sums, the first run kept and superseded.

Then refunds made after settlement, on the same stack (after the channels' day above, which they
leave alone: the bank's part): orders settled by the depository's split (each receiver and the
platform's fee credited at the bank simulator), then refunded through the gateway and the
channel. Each refund's success registers a debit of each member with the depository
(payment-worker), the bank books it in its daily file, and the bank's file of the day reconciles
clean: every line matched, every member's balance agreed. Then the same day's file with a
member's debit missing and a debit the platform never asked for: both reported, and each balance
difference explained by them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
import pytest
from support.api import signed_headers
from support.ledger import assert_ledger_invariants
from support.order_world import order_json
from support.recon_results import balance_checks, current_run

from e2e.conftest import wait_until
from e2e.test_orders_flow import Orders, orders  # noqa: F401 - the stack, as a fixture
from fundhub.channels.apps import ChannelAppStore
from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.common.config import Settings
from fundhub.orders.refund_debits import PLATFORM_MEMBER
from fundhub.reconciler.daily import fetch_day
from fundhub.reconciler.fetchers import download_fetcher
from fundhub.reconciliation.intake import take_file
from fundhub.reconciliation.statement import Source

AMOUNT = 10_000  # 6,000 + 3,000 to the receivers, 1,000 the platform's fee
REFUND = 2_000


async def _paid_day(stack: Orders) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for channel, n in (("WECHATPAY", 5), ("ALIPAY", 2)):
        for _ in range(n):
            body = order_json(
                f"RC-{uuid.uuid4().hex[:12]}",
                [(stack.a, 6_000), (stack.b, 3_000)],
                1_000,
                channel=channel,
                notifyUrl=stack.notify_url,
            )
            created = await stack.post("/v1/orders", body)
            assert created.status_code == 200, created.text
            made.append(created.json())
    for order in made:
        await stack.pay(order)

    async def all_paid() -> bool:
        states = [(await stack.order(o["orderNo"]))["state"] for o in made]
        return all(s == "PAID" for s in states)

    await wait_until(all_paid)
    refunds = []
    for order in (made[0], made[5]):  # one refund on each channel
        answer = await stack.post(
            f"/v1/orders/{order['orderNo']}/refunds", {"refundNo": "RF-1", "amount": REFUND}
        )
        assert answer.status_code == 202, answer.text
        refunds.append(answer.json())

    async def refunded() -> bool:
        reads = [await stack.order(o["orderNo"]) for o in (made[0], made[5])]
        return all(r["refunds"][0]["state"] == "SUCCESS" for r in reads)

    await wait_until(refunded)
    return made, refunds[0]


async def test_a_day_reconciles_clean_then_reports_each_injected_class(
    orders: Orders,  # noqa: F811
) -> None:
    day: date = utcnow().astimezone(BANK_TZ).date()
    made, wechat_refund = await _paid_day(orders)
    sim = orders.simulator.url
    for channel in ("wechatpay", "alipay"):
        issued = await orders.http.put(f"{sim}/sim/bills/{channel}/{day}", json={})
        assert issued.status_code == 200, issued.text
    env = orders.env
    settings = env.settings.model_copy(
        update={"wechatpay_base_url": sim, "alipay_gateway_url": f"{sim}/gateway.do"}
    )
    apps = ChannelAppStore(env.pool, settings.master_keys(), merchant_keys=True)
    async with aiohttp.ClientSession() as session:
        fetch = download_fetcher(settings, session, apps)
        done = await fetch_day(env.pool, fetch, settings, day, [Source.WECHATPAY, Source.ALIPAY])
        assert done == {Source.WECHATPAY: "imported", Source.ALIPAY: "imported"}
        runs = {
            r["source"]: r
            for r in await env.pool.fetch(
                "SELECT run_id, source, counts, sums FROM recon_runs WHERE day = $1", day
            )
        }
        assert runs["wechatpay"]["counts"] == {
            "matched": 6, "missing_on_platform": 0, "missing_at_channel": 0,
            "amount_mismatch": 0, "status_mismatch": 0, "duplicate": 0, "fee_difference": 0,
        }  # fmt: skip
        assert runs["alipay"]["counts"]["matched"] == 3
        assert sum(runs["alipay"]["counts"].values()) == 3
        assert runs["wechatpay"]["sums"]["matched"] == 5 * AMOUNT + REFUND

        wechat = [o["orderId"] for o in made[:5]]
        injected = [
            {"kind": "status", "reference": wechat[0], "lineKind": "PAYMENT", "status": "REVOKED"},
            {"kind": "drop", "reference": wechat[1]},
            {"kind": "amount", "reference": wechat[2], "amountFen": 9_999},
            {"kind": "fee", "reference": wechat[3], "feeFen": 1},
            {"kind": "duplicate", "reference": wechat_refund["refundId"], "lineKind": "REFUND"},
            {"kind": "add", "reference": "RC-NOT-OURS", "amountFen": 4_321},
        ]
        issued = await orders.http.put(
            f"{sim}/sim/bills/wechatpay/{day}", json={"discrepancies": injected}
        )
        assert issued.status_code == 200, issued.text
        name, data = await fetch(Source.WECHATPAY, day)
        taken = await take_file(
            env.pool, Source.WECHATPAY, day, name, data, by="acceptance", settings=settings
        )
    run = taken.run
    assert run is not None and taken.imported.superseded is not None
    assert run.superseded == runs["wechatpay"]["run_id"]
    assert run.counts == {
        "matched": 2, "missing_on_platform": 1, "missing_at_channel": 1, "amount_mismatch": 1,
        "status_mismatch": 1, "duplicate": 1, "fee_difference": 1,
    }  # fmt: skip
    assert run.sums == {
        "matched": AMOUNT + REFUND, "missing_on_platform": 4_321, "missing_at_channel": AMOUNT,
        "amount_mismatch": 9_999, "status_mismatch": AMOUNT, "duplicate": REFUND,
        "fee_difference": AMOUNT,
    }  # fmt: skip
    found = {
        r["class"]: r["reference"]
        for r in await env.pool.fetch(
            "SELECT class, reference FROM recon_discrepancies WHERE run_id = $1", run.run_id
        )
    }
    assert found == {
        "status_mismatch": wechat[0],
        "missing_at_channel": wechat[1],
        "amount_mismatch": wechat[2],
        "fee_difference": wechat[3],
        "duplicate": wechat_refund["refundId"],
        "missing_on_platform": "RC-NOT-OURS",
    }


A_SHARE, B_SHARE, FEE = 6_000, 3_000, 1_000
REFUNDS = (2_000, 500)  # one on each order, after it settled


@dataclass(frozen=True)
class RefundedDay:
    day: date
    settlements: list[str]
    refunds: list[str]
    debited: dict[str, int]  # member -> what the refunds took from it at the bank
    debit_lines: int  # one per member per refund


async def _settle(stack: Orders, order_no: str) -> str:
    path = f"/v1/orders/{order_no}/settle"
    headers = signed_headers(*stack.key, "POST", path, None, b"")
    answer = await stack.http.post(f"{stack.gateway.url}{path}", content=b"", headers=headers)
    assert answer.status_code == 202, answer.text
    settlement_id: str = answer.json()["settlementId"]
    return settlement_id


async def _all_in(stack: Orders, sql: str, ids: list[str], state: str) -> None:
    async def reached() -> bool:
        states = await stack.env.pool.fetch(sql, ids)
        return len(states) == len(ids) and all(r[0] == state for r in states)

    await wait_until(reached, timeout_s=30)


@pytest.fixture(scope="module")
async def refunded_day(orders: Orders) -> RefundedDay:  # noqa: F811
    stack = orders
    day = utcnow().astimezone(BANK_TZ).date()
    made: list[dict[str, Any]] = []
    for _ in REFUNDS:
        body = order_json(
            f"RR-{uuid.uuid4().hex[:12]}", [(stack.a, A_SHARE), (stack.b, B_SHARE)], FEE
        )
        created = await stack.post("/v1/orders", body)
        assert created.status_code == 200, created.text
        made.append(created.json())
        await stack.pay(created.json())
    order_ids = [o["orderId"] for o in made]
    await _all_in(stack, "SELECT state FROM orders WHERE order_id = ANY($1)", order_ids, "PAID")
    settlements = [await _settle(stack, o["orderNo"]) for o in made]
    await _all_in(
        stack,
        "SELECT state FROM settlements WHERE settlement_id = ANY($1)",
        settlements,
        "SETTLED",
    )
    refunds: list[str] = []
    for order, amount in zip(made, REFUNDS, strict=True):
        answer = await stack.post(
            f"/v1/orders/{order['orderNo']}/refunds", {"refundNo": "RR-1", "amount": amount}
        )
        assert answer.status_code == 202, answer.text
        refunds.append(answer.json()["refundId"])
    await _all_in(
        stack, "SELECT state FROM order_refunds WHERE refund_id = ANY($1)", refunds, "SUCCESS"
    )
    # Each refund, taken from the settled shares, is a debit of the members at the depository.
    await _all_in(
        stack,
        "SELECT state FROM order_refund_debits WHERE refund_id = ANY($1)",
        refunds,
        "SUCCESS",
    )
    # The order's API shows each refund's debit, final, with the bank's time of it.
    for order in made:
        (shown,) = (await stack.order(order["orderNo"]))["refunds"]
        assert shown["takenFrom"] == "available", shown
        assert shown["depositoryDebit"]["state"] == "SUCCESS", shown
        assert shown["depositoryDebit"]["finishedAt"], shown
    debited: dict[str, int] = {}
    rows = await stack.env.pool.fetch(
        "SELECT m->>'memberId' AS member, (m->>'amount')::bigint AS fen "
        "FROM order_refund_debits, jsonb_array_elements(members) m WHERE refund_id = ANY($1)",
        refunds,
    )
    for row in rows:
        debited[row["member"]] = debited.get(row["member"], 0) + row["fen"]
    assert sum(debited.values()) == sum(REFUNDS)
    return RefundedDay(day, settlements, refunds, debited, len(rows))


def _settings(stack: Orders) -> Settings:
    return stack.env.settings.model_copy(
        update={"bank_base_url": stack.bank_url, "bank_app_id": stack.env.app_id}
    )


async def _release(stack: Orders, day: date, injected: list[dict[str, Any]]) -> None:
    released = await stack.http.put(
        f"{stack.bank_url}/bank/v1/simulator/daily-files/{day}", json={"discrepancies": injected}
    )
    assert released.status_code == 200, released.text


async def test_refunds_after_settlement_are_debited_at_the_bank_and_the_day_reconciles_clean(
    orders: Orders,  # noqa: F811
    refunded_day: RefundedDay,
) -> None:
    stack, day = orders, refunded_day.day
    await _release(stack, day, [])
    settings = _settings(stack)
    apps = ChannelAppStore(stack.env.pool, settings.master_keys(), merchant_keys=True)
    async with aiohttp.ClientSession() as session:
        fetch = download_fetcher(settings, session, apps)
        done = await fetch_day(stack.env.pool, fetch, settings, day, [Source.BANK])
    assert done == {Source.BANK: "imported"}
    run = await current_run(stack.env.pool, Source.BANK, day)
    lines = await stack.env.pool.fetchval(
        "SELECT count(*) FROM recon_lines l JOIN recon_runs r USING (file_id) "
        "WHERE r.run_id = $1 AND l.kind = 'DEBIT'",
        run["run_id"],
    )
    assert lines == refunded_day.debit_lines >= len(REFUNDS)  # the bank booked each debit
    # 3 split lines per settlement, a debit line per member per refund: all matched.
    assert run["counts"]["matched"] == 3 * len(REFUNDS) + lines
    assert sum(run["counts"].values()) == run["counts"]["matched"], run["counts"]
    assert run["unexplained"] == 0
    checks = await balance_checks(stack.env.pool, run["run_id"])
    assert {state for *_, state in checks.values()} == {"AGREED"}, checks
    a, b = stack.a, stack.b
    debited = refunded_day.debited
    n = len(REFUNDS)
    assert checks[a.account_id][:2] == (n * A_SHARE - debited.get(a.merchant_id, 0),) * 2
    assert checks[b.account_id][:2] == (n * B_SHARE - debited.get(b.merchant_id, 0),) * 2
    assert checks[PLATFORM_MEMBER][:2] == (n * FEE - debited.get(PLATFORM_MEMBER, 0),) * 2
    await assert_ledger_invariants(stack.env.pool)


async def test_a_member_debit_missing_or_extra_at_the_bank_is_reported_and_explains_the_balance(
    orders: Orders,  # noqa: F811
    refunded_day: RefundedDay,
) -> None:
    stack, day = orders, refunded_day.day
    a, b = stack.a, stack.b
    first = refunded_day.refunds[0]
    a_debit = await stack.env.pool.fetchval(
        "SELECT (m->>'amount')::bigint FROM order_refund_debits, jsonb_array_elements(members) m "
        "WHERE refund_id = $1 AND m->>'memberId' = $2",
        first,
        a.merchant_id,
    )
    assert a_debit > 0
    extra = 777
    await _release(stack, day, [
        # The bank never debited merchant a for the first refund (as before this was told it).
        {"kind": "drop", "reference": first, "account": a.merchant_id},
        # And debited merchant b for a refund the platform does not know.
        {"kind": "add", "account": b.merchant_id, "amountFen": extra, "direction": "D",
         "reference": "RFD-NOT-OURS", "business": "SPLIT_REFUND"},
    ])  # fmt: skip
    settings = _settings(stack)
    apps = ChannelAppStore(stack.env.pool, settings.master_keys(), merchant_keys=True)
    async with aiohttp.ClientSession() as session:
        fetch = download_fetcher(settings, session, apps)
        name, data = await fetch(Source.BANK, day)
    taken = await take_file(
        stack.env.pool, Source.BANK, day, name, data, by="acceptance", settings=settings
    )
    run = taken.run
    assert run is not None
    assert run.counts["missing_at_channel"] == 1 and run.counts["missing_on_platform"] == 1
    assert run.sums["missing_at_channel"] == a_debit
    assert run.sums["missing_on_platform"] == extra
    assert sum(run.counts.values()) - run.counts["matched"] == 2, run.counts
    found = {
        r["class"]: (r["kind"], r["reference"], r["account"])
        for r in await stack.env.pool.fetch(
            "SELECT class, kind, reference, account FROM recon_discrepancies WHERE run_id = $1",
            run.run_id,
        )
    }
    assert found == {
        # a's line is gone: the platform's record names the account it was taken from.
        "missing_at_channel": ("DEBIT", f"SPLIT_REFUND:{first}:{a.merchant_id}", a.account_id),
        "missing_on_platform": ("DEBIT", f"SPLIT_REFUND:RFD-NOT-OURS:{b.merchant_id}",
                                b.merchant_id),
    }  # fmt: skip
    checks = await balance_checks(stack.env.pool, run.run_id)
    # The bank holds a's share it did not debit, and b's 777 less: each difference explained.
    assert checks[a.account_id][2:] == (a_debit, "EXPLAINED"), checks
    assert checks[a.account_id][0] - checks[a.account_id][1] == a_debit
    assert checks[b.account_id][2:] == (-extra, "EXPLAINED"), checks
    assert run.unexplained == 0
