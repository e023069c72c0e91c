"""Orders' consumers against real Kafka and Postgres: the channels' notifications (notify-ingest's
handler) posting each payment and each refund's result once, through duplicates, redeliveries
and out-of-order arrival; the refund commands (payment-worker's handler), the sender and the
poller against a channel over HTTP; exceptions kept; the ledger whole throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from support.channel_events import paid, publish, refunded, settle, withdraw
from support.channel_server import DOWN, UP
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.order_workers import order_workers
from support.order_world import World, body_of, order, order_world

from fundhub.channels.events import Channel, EventKind
from fundhub.common.kafka import KafkaPublisher
from fundhub.orders import notifications
from fundhub.orders.postings import clearing_account, fee_account
from fundhub.orders.request import parse_refund_request
from fundhub.orders.wire import refund_body

KEY = "ak_0000000000000000000c"
WECHAT_CLEARING = clearing_account(Channel.WECHATPAY, "CNY")
ALIPAY_CLEARING = clearing_account(Channel.ALIPAY, "CNY")
FEE = fee_account(KEY, "CNY")


@dataclass
class Running:
    world: World
    publisher: KafkaPublisher
    channel: Any  # the test channel's server


async def eventually(probe: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s")


@pytest.fixture(scope="module")
async def running(env: ModuleEnv) -> AsyncIterator[Running]:
    """The consumers, the outbox relay, the refund sender and poller, as the services run them."""
    async with (
        order_world(env, KEY) as world,
        order_workers(world.settings, env.pool, world.channels) as publisher,
    ):
        yield Running(world, publisher, world.channel)


async def balance(env: ModuleEnv, account: str) -> tuple[int, int, int]:
    row = await env.pool.fetchrow(
        "SELECT available, frozen, pending FROM account_balances WHERE account_id = $1", account
    )
    return (row["available"], row["frozen"], row["pending"]) if row else (0, 0, 0)


async def system_balance(env: ModuleEnv, account: str) -> int:
    return int(
        await env.pool.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", account
        )
    )


async def refund_row(env: ModuleEnv, refund_id: str) -> dict[str, Any]:
    row = await env.pool.fetchrow("SELECT * FROM order_refunds WHERE refund_id = $1", refund_id)
    assert row is not None
    return dict(row)


async def admit(world: World, order_no: str, body: str) -> dict[str, Any]:
    view, _ = await world.desk.refund(KEY, order_no, parse_refund_request(body.encode()), "test")
    return refund_body(view.order, view.refund, view.parts)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_each_payment_posts_once_through_duplicates_redeliveries_and_disorder(
    running: Running,
) -> None:
    world, env = running.world, running.world.env
    one = body_of(
        (
            await world.desk.create(
                KEY,
                order(
                    "F-1",
                    [(world.a, 6_000), (world.b, 3_000)],
                    1_000,
                    notifyUrl="https://erp.example/orders",
                ),
            )
        )[0]
    )
    two = body_of((await world.desk.create(KEY, order("F-2", [(world.a, 500)], 0, "ALIPAY")))[0])
    before_a, before_b = (
        await balance(env, world.a.account_id),
        await balance(env, world.b.account_id),
    )
    exceptions_before = counter("fundhub_orders_exceptions_total", channel="ALIPAY", kind="CLOSED")
    refund_first = refunded(one, {"refundId": "RFD-never-asked", "amount": 100})
    pay_one, pay_two = paid(one), paid(two)
    closed_two = pay_two.model_copy(
        update={"kind": EventKind.CLOSED, "notification_id": "n-closed-after-paid"}
    )
    # A refund notice before the payment, the payment, its duplicate and the channel's retry
    # (the same notification id), the other order's payment twice, then a CLOSED contradicting it.
    batch = [refund_first, pay_one, pay_one, pay_one.model_copy(), pay_two, pay_two, closed_two]
    await publish(running.publisher, world.names, batch)

    async def consumed() -> bool:
        n = await env.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = $1", notifications.CONSUMER
        )
        return int(n) >= 4

    await eventually(consumed)
    assert (await balance(env, world.a.account_id))[2] == before_a[2] + 6_500
    assert (await balance(env, world.b.account_id))[2] == before_b[2] + 3_000
    assert (await balance(env, FEE))[2] >= 1_000
    states = dict(
        await env.pool.fetch("SELECT order_no, state FROM orders WHERE order_no IN ('F-1', 'F-2')")
    )
    assert states == {"F-1": "PAID", "F-2": "PAID"}
    kept = await env.pool.fetch(
        "SELECT kind, out_trade_no FROM order_exceptions WHERE out_trade_no = ANY($1::text[])",
        [one["orderId"], two["orderId"]],
    )
    # One of each, in either order: the two orders' notifications are on different partitions,
    # and a partition whose leader was still moving came in a later batch once on the suite.
    assert sorted((k["kind"], k["out_trade_no"]) for k in kept) == sorted(
        [("REFUND", one["orderId"]), ("CLOSED", two["orderId"])]
    )
    assert counter("fundhub_orders_exceptions_total", channel="ALIPAY", kind="CLOSED") == (
        exceptions_before + 1
    )
    entries = await env.pool.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref_type = 'order' AND ref_id = ANY($1::text[])",
        [one["orderId"], two["orderId"]],
    )
    assert entries == 2
    # The payment's callback for the order with a notifyUrl, once.
    callbacks = await env.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1 AND key = $2",
        world.names.client_callbacks,
        one["orderId"],
    )
    assert callbacks == 1

    # The whole batch redelivered (a crash before the offsets were committed): nothing moves.
    journal = await env.pool.fetchval("SELECT count(*) FROM journal_entries")
    await publish(running.publisher, world.names, batch)
    sentinels = [paid(one, appId="wx-someone-else"), paid(two, totalFen=1)]
    await publish(running.publisher, world.names, sentinels)

    async def sentinels_seen() -> bool:
        n = await env.pool.fetchval(
            "SELECT count(*) FROM order_exceptions WHERE message_id = ANY($1::text[])",
            [s.message_id() for s in sentinels],
        )
        return int(n) == 2

    await eventually(sentinels_seen)
    assert await env.pool.fetchval("SELECT count(*) FROM journal_entries") == journal
    assert (await balance(env, world.a.account_id))[2] == before_a[2] + 6_500
    await assert_ledger_invariants(env.pool)


async def test_a_refund_before_settlement_is_taken_from_pending_and_finished_by_its_notice(
    running: Running,
) -> None:
    world, env = running.world, running.world.env
    view, _ = await world.desk.create(
        KEY,
        order("F-3", [(world.a, 6_000), (world.b, 3_000)], 1_000, notifyUrl="https://e.example/o"),
    )
    one = body_of(view)
    await publish(running.publisher, world.names, [paid(one)])

    async def is_paid() -> bool:
        return bool(
            await env.pool.fetchval("SELECT state = 'PAID' FROM orders WHERE order_no = 'F-3'")
        )

    await eventually(is_paid)
    a_before = await balance(env, world.a.account_id)
    clearing_before = await system_balance(env, WECHAT_CLEARING)
    refund = await admit(world, "F-3", '{"refundNo": "F-3-R1", "amount": 5000}')
    assert refund["statusCode"] == 202 and refund["state"] == "PROCESSING"
    assert [s["amount"] for s in refund["splits"]] == [3_000, 1_500] and refund[
        "platformFee"
    ] == 500

    async def sent() -> bool:
        row = await refund_row(env, refund["refundId"])
        return bool(row["held"] and row["submitted_at"] is not None)

    await eventually(sent)
    row = await refund_row(env, refund["refundId"])
    assert row["source_bucket"] == "pending" and row["channel_refund_id"]
    _, frozen, pending = await balance(env, world.a.account_id)
    assert (frozen, pending) == (a_before[1] + 3_000, a_before[2] - 3_000)
    notice = refunded(one, {**refund, "channelRefundId": row["channel_refund_id"]})
    await publish(running.publisher, world.names, [notice, notice])

    async def succeeded() -> bool:
        return (await refund_row(env, refund["refundId"]))["state"] == "SUCCESS"

    await eventually(succeeded)
    assert await balance(env, world.a.account_id) == (a_before[0], a_before[1], a_before[2] - 3_000)
    assert await system_balance(env, WECHAT_CLEARING) == clearing_before + 5_000
    assert running.channel.calls["refund"] >= 1
    callbacks = await env.pool.fetch(
        "SELECT key FROM outbox WHERE topic = $1 AND key = $2",
        world.names.client_callbacks,
        refund["refundId"],
    )
    assert len(callbacks) == 1
    # The notice again, late: nothing moves.
    await publish(
        running.publisher,
        world.names,
        [refunded(one, {**refund, "channelRefundId": row["channel_refund_id"]})],
    )
    await asyncio.sleep(1)
    assert await system_balance(env, WECHAT_CLEARING) == clearing_before + 5_000
    await assert_ledger_invariants(env.pool)


async def test_a_closed_refund_gives_the_money_back_and_the_poller_finds_out(
    running: Running,
) -> None:
    world, env = running.world, running.world.env
    view, _ = await world.desk.create(KEY, order("F-4", [(world.b, 2_000)], 0, "ALIPAY"))
    await publish(running.publisher, world.names, [paid(body_of(view))])
    await eventually(
        lambda: env.pool.fetchval("SELECT state = 'PAID' FROM orders WHERE order_no = 'F-4'")
    )
    b_before = await balance(env, world.b.account_id)
    refund = await admit(world, "F-4", '{"refundNo": "F-4-R1", "amount": 2000}')

    async def submitted() -> bool:
        return (await refund_row(env, refund["refundId"]))["submitted_at"] is not None

    await eventually(submitted)
    assert (await balance(env, world.b.account_id))[1] == b_before[1] + 2_000
    running.channel.finish(refund["refundId"], "CLOSED")

    async def closed() -> bool:
        return (await refund_row(env, refund["refundId"]))["state"] == "CLOSED"

    await eventually(closed)
    row = await refund_row(env, refund["refundId"])
    assert row["error_code"] == "E035_CHANNEL_REFUSED"
    assert await balance(env, world.b.account_id) == b_before
    # What is left to refund is whole again.
    again = await admit(world, "F-4", '{"refundNo": "F-4-R2", "amount": 2000}')
    assert again["state"] == "PROCESSING"
    await assert_ledger_invariants(env.pool)


async def test_a_channel_out_of_reach_leaves_the_refund_to_the_poller(running: Running) -> None:
    world, env = running.world, running.world.env
    view, _ = await world.desk.create(KEY, order("F-5", [(world.a, 1_000)], 100))
    await publish(running.publisher, world.names, [paid(body_of(view))])
    await eventually(
        lambda: env.pool.fetchval("SELECT state = 'PAID' FROM orders WHERE order_no = 'F-5'")
    )
    running.channel.mode = DOWN
    try:
        refund = await admit(world, "F-5", '{"refundNo": "F-5-R1", "amount": 1100}')

        async def held_unsent() -> bool:
            row = await refund_row(env, refund["refundId"])
            return bool(row["held"]) and row["poll_attempts"] >= 2

        await eventually(held_unsent)
        assert (await refund_row(env, refund["refundId"]))["submitted_at"] is None
    finally:
        running.channel.mode = UP

    async def submitted() -> bool:
        return (await refund_row(env, refund["refundId"]))["submitted_at"] is not None

    await eventually(submitted)
    # The channel loses it (its query answers REFUND_NOT_FOUND): the poller sends it again.
    lost = running.channel.refunds.pop(refund["refundId"])
    calls = running.channel.calls["refund"]

    async def sent_again() -> bool:
        return refund["refundId"] in running.channel.refunds

    await eventually(sent_again)
    assert running.channel.calls["refund"] > calls and running.channel.calls["query"] >= 1
    assert running.channel.refunds[refund["refundId"]]["refund"] == lost["refund"]
    running.channel.finish(refund["refundId"], "SUCCESS")

    async def succeeded() -> bool:
        return (await refund_row(env, refund["refundId"]))["state"] == "SUCCESS"

    await eventually(succeeded)
    await assert_ledger_invariants(env.pool)


async def test_after_settlement_refunds_take_from_available_or_fail_with_e004(
    running: Running,
) -> None:
    world, env = running.world, running.world.env
    view, _ = await world.desk.create(
        KEY, order("F-6", [(world.a, 800), (world.b, 200)], 0, notifyUrl="https://e.example/o")
    )
    await publish(running.publisher, world.names, [paid(body_of(view))])
    await eventually(
        lambda: env.pool.fetchval("SELECT state = 'PAID' FROM orders WHERE order_no = 'F-6'")
    )
    await settle(env.pool, view.order["order_id"])
    a_before = await balance(env, world.a.account_id)
    refund = await admit(world, "F-6", '{"refundNo": "F-6-R1", "amount": 500}')

    async def held() -> bool:
        return bool((await refund_row(env, refund["refundId"]))["held"])

    await eventually(held)
    assert (await refund_row(env, refund["refundId"]))["source_bucket"] == "available"
    assert (await balance(env, world.a.account_id))[0] == a_before[0] - 400

    # Withdrawn meanwhile: every fen of b's available gone, so its share cannot be taken.
    b_available = (await balance(env, world.b.account_id))[0]
    await withdraw(env.pool, world.b.account_id, b_available)
    journal = await env.pool.fetchval("SELECT count(*) FROM journal_entries")
    failing = await admit(world, "F-6", '{"refundNo": "F-6-R2", "amount": 500}')

    async def failed() -> bool:
        return (await refund_row(env, failing["refundId"]))["state"] == "FAILED"

    await eventually(failed)
    row = await refund_row(env, failing["refundId"])
    assert row["error_code"] == "E004_INSUFFICIENT_FUNDS" and not row["held"]
    assert await env.pool.fetchval("SELECT count(*) FROM journal_entries") == journal
    assert refund["refundId"] in running.channel.refunds
    assert failing["refundId"] not in running.channel.refunds  # the channel never heard of it
    await assert_ledger_invariants(env.pool)


async def test_every_fen_is_accounted_for(running: Running) -> None:
    """Each channel's clearing is -(paid - refunded); each part's account holds its shares less
    what refunds took; nothing negative; every entry balanced."""
    env = running.world.env
    for channel, clearing in (
        (Channel.WECHATPAY, WECHAT_CLEARING),
        (Channel.ALIPAY, ALIPAY_CLEARING),
    ):
        paid_total = await env.pool.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM orders WHERE state = 'PAID' AND channel = $1",
            channel.value,
        )
        refunded_total = await env.pool.fetchval(
            "SELECT coalesce(sum(r.amount), 0) FROM order_refunds r JOIN orders o USING (order_id)"
            " WHERE r.state = 'SUCCESS' AND o.channel = $1",
            channel.value,
        )
        assert await system_balance(env, clearing) == -(paid_total - refunded_total)
    await assert_ledger_invariants(env.pool)
