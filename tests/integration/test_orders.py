"""Orders against real Postgres, the bank simulator's depository and a channel over HTTP:
idempotent creation under concurrency, refusals that write nothing, outages that answer 503
and are completed by the same request again, and refunds admitted concurrently that never
promise more than was paid."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.channel_events import WECHAT_APP, paid, settle
from support.channel_server import DOWN, REFUSING, UP
from support.depository import depository_serving
from support.env import ModuleEnv, new_bank_keys
from support.ledger import assert_ledger_invariants
from support.merchants import Merchant, add_merchant
from support.order_world import (
    World,
    apply_events,
    body_of,
    notify_paid,
    order,
    order_world,
)

from fundhub.access.store import NonceReplayed
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.topics import topics
from fundhub.orders.request import parse_refund_request
from fundhub.orders.unsettled import count as unsettled_count

KEY = "ak_0000000000000000000a"
OTHER_KEY = "ak_0000000000000000000b"


@pytest.fixture(scope="module")
async def world(env: ModuleEnv) -> AsyncIterator[World]:
    async with order_world(env, KEY) as built:
        yield built


async def count(world: World, table: str) -> int:
    return int(await world.env.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_creations_nonce_is_recorded_with_it_and_a_replay_writes_nothing(
    world: World,
) -> None:
    nonce = "nonce-of-order-create-0001"
    _, created = await world.desk.create(KEY, order("SO-nonce-1", [(world.a, 500)], 0), nonce)
    assert created
    recorded = "SELECT count(*) FROM api_nonces WHERE key_id = $1 AND nonce = $2"
    assert await world.env.pool.fetchval(recorded, KEY, nonce) == 1
    before = await count(world, "orders")
    with pytest.raises(NonceReplayed):
        await world.desk.create(KEY, order("SO-nonce-2", [(world.a, 500)], 0), nonce)
    assert await count(world, "orders") == before
    # Another key's nonces are its own.
    mine = await add_merchant(world.env.pool, OTHER_KEY)
    _, theirs = await world.desk.create(OTHER_KEY, order("SO-nonce-3", [(mine, 700)], 0), nonce)
    assert theirs


async def test_copies_of_one_order_sent_at_once_make_one_order_and_one_payment(
    world: World,
) -> None:
    request = order("SO-concurrent", [(world.a, 6_000), (world.b, 3_000)], 1_000)
    before = await count(world, "orders")
    results = await asyncio.gather(*(world.desk.create(KEY, request) for _ in range(20)))
    ids = {view.order["order_id"] for view, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    assert await count(world, "orders") == before + 1
    (order_id,) = ids
    body = body_of(results[0][0])
    assert body["state"] == "AWAITING_PAYMENT" and body["bizCode"] == "PROCESSING"
    assert body["payment"]["params"] == {"code_url": f"weixin://wxpay/bizpayurl?pr={order_id}"}
    assert body["payment"]["appId"] == WECHAT_APP
    assert [s["amount"] for s in body["splits"]] == [6_000, 3_000] and body["platformFee"] == 1_000
    assert world.channel.payments[order_id]["amount"] == 10_000  # one payment, deduped by id
    assert order_id in world.depository.orders
    registered = json.loads(world.depository.orders[order_id][0])
    assert [r["amount"] for r in registered["receivers"]] == ["6000", "3000"]
    assert registered["platform_fee"] == "1000" and registered["payee"] == KEY
    # The same orderNo with another body: 409, whatever the timing.
    other = order("SO-concurrent", [(world.a, 6_000), (world.b, 3_000)], 999)
    with pytest.raises(FundhubError) as conflict:
        await world.desk.create(KEY, other)
    assert conflict.value.error is ErrorCode.IDEMPOTENCY_CONFLICT
    # Another tenant's orderNo space is its own.
    mine = await add_merchant(world.env.pool, OTHER_KEY)
    theirs, created = await world.desk.create(
        OTHER_KEY, order("SO-concurrent", [(mine, 9_000)], 1_000)
    )
    assert created and theirs.order["order_id"] != order_id


async def test_receivers_that_may_not_trade_are_refused_and_nothing_is_written(
    world: World,
) -> None:
    pending = await add_merchant(world.env.pool, KEY, state="PENDING_REVIEW")
    closed = await add_merchant(world.env.pool, KEY, state="CLOSED")
    foreign = await add_merchant(world.env.pool, OTHER_KEY)
    missing = Merchant("mch_does_not_exist", "X")
    before = (
        await count(world, "orders"),
        await count(world, "order_parts"),
        await count(world, "accounts"),
    )
    messages = {}
    for name, merchant in (
        ("pending", pending),
        ("closed", closed),
        ("foreign", foreign),
        ("missing", missing),
    ):
        with pytest.raises(FundhubError) as refused:
            await world.desk.create(
                KEY, order(f"SO-refused-{name}", [(world.a, 100), (merchant, 100)], 0)
            )
        assert refused.value.error is ErrorCode.MERCHANT_NOT_ACTIVE
        messages[name] = refused.value.message
    assert messages["pending"] == (
        f"splits[1].merchantId: merchant {pending.merchant_id} is PENDING_REVIEW, not ACTIVE"
    )
    assert "is CLOSED" in messages["closed"]
    # Another tenant's merchant reads exactly as one that does not exist.
    assert messages["foreign"] == messages["missing"] == "splits[1].merchantId: unknown merchant"
    after = (
        await count(world, "orders"),
        await count(world, "order_parts"),
        await count(world, "accounts"),
    )
    assert after == before


async def test_a_channel_outage_answers_503_and_the_same_request_completes_the_order(
    world: World,
) -> None:
    request = order("SO-channel-down", [(world.a, 500)], 0)
    world.channel.mode = DOWN
    try:
        with pytest.raises(FundhubError) as down:
            await world.desk.create(KEY, request)
    finally:
        world.channel.mode = UP
    assert down.value.error is ErrorCode.UNAVAILABLE
    assert "send the same order again" in down.value.message
    row = await world.env.pool.fetchrow(
        "SELECT state, depository_ref, payment_params FROM orders WHERE order_no = $1",
        "SO-channel-down",
    )
    assert row is not None and row["state"] == "CREATED"
    assert row["depository_ref"] is not None and row["payment_params"] is None
    view, created = await world.desk.create(KEY, request)
    assert not created and view.order["state"] == "AWAITING_PAYMENT"
    assert view.order["payment_params"]
    assert (
        await world.env.pool.fetchval(
            "SELECT count(*) FROM orders WHERE order_no = 'SO-channel-down'"
        )
        == 1
    )


async def test_a_depository_out_of_reach_or_forging_answers_leaves_the_order_for_the_retry(
    world: World,
) -> None:
    request = order("SO-depository-down", [(world.b, 700)], 0)
    unreachable = world.desk_with_depository("http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(FundhubError) as down:
        await unreachable.create(KEY, request)
    assert down.value.error is ErrorCode.UNAVAILABLE and "depository" in down.value.message
    # A depository answering with a signature of another key is not believed.
    forger = new_bank_keys()
    with depository_serving(world.env, forger.private_pem) as (forged_held, forged_url):
        with pytest.raises(FundhubError) as forged:
            await world.desk_with_depository(forged_url).create(KEY, request)
        assert forged.value.error is ErrorCode.UNAVAILABLE
        assert forged_held.orders  # it was asked, and its answer refused
    row = await world.env.pool.fetchrow(
        "SELECT state, depository_ref FROM orders WHERE order_no = 'SO-depository-down'"
    )
    assert row is not None and row["state"] == "CREATED" and row["depository_ref"] is None
    view, _ = await world.desk.create(KEY, request)
    assert view.order["state"] == "AWAITING_PAYMENT" and view.order["depository_ref"]


async def test_refusals_by_the_depository_or_the_channel_fail_the_order_for_good(
    world: World,
) -> None:
    rejected = order("SO-rejected", [(world.a, 100)], 0, description="REJECT this one")
    view, _ = await world.desk.create(KEY, rejected)
    body = body_of(view)
    assert body["state"] == "FAILED" and body["errorCode"] == "E036_DEPOSITORY_REFUSED"
    assert body["bizCode"] == "FAILED" and "REJECT" in body["msg"]
    again, created = await world.desk.create(KEY, rejected)
    assert not created and again.order["order_id"] == view.order["order_id"]
    world.channel.mode = REFUSING
    try:
        refused, _ = await world.desk.create(KEY, order("SO-channel-refused", [(world.a, 100)], 0))
    finally:
        world.channel.mode = UP
    assert refused.order["state"] == "FAILED"
    assert refused.order["error_code"] == "E035_CHANNEL_REFUSED"
    assert refused.order["message"] == "INVALID_REQUEST: refused"


async def test_concurrent_refunds_never_promise_more_than_was_paid(world: World) -> None:
    request = order("SO-refunds", [(world.a, 6_000), (world.b, 3_000)], 1_000, channel="ALIPAY")
    view, _ = await world.desk.create(KEY, request)
    refund_of = parse_refund_request
    with pytest.raises(FundhubError) as unpaid:
        await world.desk.refund(KEY, "SO-refunds", refund_of(b'{"refundNo":"R0","amount":1}'), "t")
    assert unpaid.value.error is ErrorCode.ORDER_NOT_PAID
    await notify_paid(world, view)

    async def attempt(n: int) -> str:
        raw = json.dumps({"refundNo": f"R-{n}", "amount": 3_000}).encode()
        try:
            await world.desk.refund(KEY, "SO-refunds", refund_of(raw), "t")
        except FundhubError as exc:
            return exc.error.code
        return "admitted"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert outcomes.count("admitted") == 3
    assert outcomes.count("E033_REFUND_EXCEEDS_PAID") == 17
    rows = await world.env.pool.fetch(
        "SELECT allocation FROM order_refunds r JOIN orders o USING (order_id)"
        " WHERE o.order_no = 'SO-refunds'"
    )
    per_part = [sum(int(r["allocation"][i]) for r in rows) for i in range(3)]
    assert per_part == [5_400, 2_700, 900]  # 3 x (1_800, 900, 300)
    last = await world.desk.refund(
        KEY, "SO-refunds", refund_of(b'{"refundNo":"R-last","amount":1000}'), "t"
    )
    assert list(last[0].refund["allocation"]) == [600, 300, 100]
    with pytest.raises(FundhubError) as beyond:
        await world.desk.refund(KEY, "SO-refunds", refund_of(b'{"refundNo":"R-x","amount":1}'), "t")
    assert beyond.value.error is ErrorCode.REFUND_EXCEEDS_PAID
    # The same refundNo again: the same refund; with another body: 409.
    again, created = await world.desk.refund(
        KEY, "SO-refunds", refund_of(b'{"refundNo":"R-last","amount":1000}'), "t"
    )
    assert not created and again.refund["refund_id"] == last[0].refund["refund_id"]
    with pytest.raises(FundhubError) as conflict:
        await world.desk.refund(
            KEY, "SO-refunds", refund_of(b'{"refundNo":"R-last","amount":999}'), "t"
        )
    assert conflict.value.error is ErrorCode.IDEMPOTENCY_CONFLICT
    # Every admitted refund has its command in the outbox, for payment-worker.
    commands = await world.env.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", topics(world.env.settings).order_commands
    )
    assert commands == 4
    # Another tenant cannot refund it: its order reads as missing.
    with pytest.raises(FundhubError) as foreign:
        await world.desk.refund(
            OTHER_KEY, "SO-refunds", refund_of(b'{"refundNo":"R-f","amount":1}'), "t"
        )
    assert foreign.value.error is ErrorCode.NOT_FOUND
    await assert_ledger_invariants(world.env.pool)


async def test_named_refund_amounts_are_checked_against_each_part(world: World) -> None:
    request = order("SO-named", [(world.a, 600), (world.b, 300)], 100)
    view, _ = await world.desk.create(KEY, request)
    await notify_paid(world, view)

    async def refund(body: dict[str, Any]) -> Any:
        return await world.desk.refund(
            KEY, "SO-named", parse_refund_request(json.dumps(body).encode()), "t"
        )

    a, b = world.a.merchant_id, world.b.merchant_id
    with pytest.raises(FundhubError) as too_much:
        await refund(
            {"refundNo": "N1", "amount": 301, "splits": [{"merchantId": b, "amount": 301}]}
        )
    assert too_much.value.error is ErrorCode.REFUND_EXCEEDS_PAID
    assert too_much.value.message.startswith("splits[0].amount:")
    with pytest.raises(FundhubError) as mismatch:
        await refund(
            {"refundNo": "N2", "amount": 300, "splits": [{"merchantId": b, "amount": 200}]}
        )
    assert mismatch.value.error is ErrorCode.SPLIT_MISMATCH
    with pytest.raises(FundhubError) as stranger:
        await refund(
            {"refundNo": "N3", "amount": 1, "splits": [{"merchantId": "mch_x", "amount": 1}]}
        )
    assert stranger.value.error is ErrorCode.INVALID_PARAMETER
    view_refund, _ = await refund(
        {
            "refundNo": "N4",
            "amount": 350,
            "splits": [{"merchantId": a, "amount": 300}],
            "platformFee": 50,
        }
    )
    assert list(view_refund.refund["allocation"]) == [300, 0, 50]


async def test_unsettled_orders_are_counted_for_a_merchants_close(world: World) -> None:
    """``orders.unsettled.count``: what the merchants' close asks of orders."""
    lone = await add_merchant(world.env.pool, KEY)

    async def unsettled() -> int:
        async with world.env.pool.acquire() as conn:
            return await unsettled_count(conn, lone.merchant_id)

    assert await unsettled() == 0
    awaiting, _ = await world.desk.create(KEY, order("SO-close-1", [(lone, 100)], 0))
    assert await unsettled() == 1  # the payer may still pay it
    await notify_paid(world, awaiting)
    assert await unsettled() == 1  # paid, its share in pending
    await settle(world.env.pool, awaiting.order["order_id"])
    assert await unsettled() == 0
    await world.desk.refund(
        KEY, "SO-close-1", parse_refund_request(b'{"refundNo":"C1","amount":50}'), "t"
    )
    assert await unsettled() == 1  # a refund in progress takes from it
    await world.env.pool.execute("UPDATE order_refunds SET state = 'FAILED' WHERE refund_no = 'C1'")
    refused, _ = await world.desk.create(
        KEY, order("SO-close-2", [(lone, 100)], 0, description="REJECT it")
    )
    assert refused.order["state"] == "FAILED"
    assert await unsettled() == 0


async def test_refunds_wait_while_the_orders_settlement_is_under_way(world: World) -> None:
    view, _ = await world.desk.create(KEY, order("SO-settling", [(world.a, 400)], 100))
    await notify_paid(world, view)
    order_id = view.order["order_id"]
    await world.env.pool.execute(
        "UPDATE orders SET settling_id = 'STL202611300000000001' WHERE order_id = $1", order_id
    )
    refund = parse_refund_request(b'{"refundNo":"W1","amount":100}')
    with pytest.raises(FundhubError) as waiting:
        await world.desk.refund(KEY, "SO-settling", refund, "t")
    assert waiting.value.error is ErrorCode.SETTLEMENT_IN_PROGRESS
    read = await world.desk.read(KEY, "SO-settling")
    assert read is not None and body_of(read)["settlement"]["state"] == "SETTLING"
    # Settled: the refund is admitted, and will take from available.
    await world.env.pool.execute(
        "UPDATE orders SET settled_at = now() WHERE order_id = $1", order_id
    )
    admitted, created = await world.desk.refund(KEY, "SO-settling", refund, "t")
    assert created and admitted.refund["state"] == "PROCESSING"


async def test_an_order_is_paid_at_the_time_the_channel_says_never_later_than_now(
    world: World,
) -> None:
    """The payment's business day, and so its T+1 cut-off, is the channel's: a notice retried
    into the next day keeps the day the payer paid; a channel clock ahead of ours is clamped."""
    yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    late, _ = await world.desk.create(KEY, order("SO-paid-yesterday", [(world.a, 500)], 0))
    ahead, _ = await world.desk.create(KEY, order("SO-paid-ahead", [(world.a, 500)], 0))
    await apply_events(
        world,
        [
            paid(body_of(late), occurredAt=yesterday),
            paid(body_of(ahead), occurredAt=datetime.now(UTC) + timedelta(hours=1)),
        ],
    )
    after = datetime.now(UTC)
    rows = {
        r["order_id"]: r["paid_at"]
        for r in await world.env.pool.fetch(
            "SELECT order_id, paid_at FROM orders WHERE order_id = ANY($1::text[])",
            [late.order["order_id"], ahead.order["order_id"]],
        )
    }
    assert rows[late.order["order_id"]] == yesterday
    assert after - timedelta(seconds=30) < rows[ahead.order["order_id"]] <= after
