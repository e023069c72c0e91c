"""Channel notifications as the gateway publishes them once verified (``ChannelEvent`` in a
``channel.notified`` envelope on ``channels.notify.v1``, keyed by out_trade_no), and a stand-in
for settlement (which another context owns) so refunds after it can be tested."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.common import db
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import (
    Bucket,
    JournalEntry,
    apply_entry,
    move,
    new_entry_id,
    system_account,
)

WECHAT_APP = "wx-test-app"
ALIPAY_APP = "ali-test-app"
# Each channel's app and its merchant (WeChat Pay's appid and mchid, Alipay's app_id and
# seller_id), as the tests' channel apps are registered.
APPS = {
    Channel.WECHATPAY: (WECHAT_APP, "1900000001"),
    Channel.ALIPAY: (ALIPAY_APP, "2088000000000001"),
}


def paid(order: dict[str, Any], transaction_id: str | None = None, **changes: Any) -> ChannelEvent:
    """The channel's payment notice for an order row (as the API answers it)."""
    channel = Channel(order["channel"])
    fields: dict[str, Any] = {
        "channel": channel,
        "kind": EventKind.PAYMENT,
        "appId": APPS[channel][0],
        "merchantRef": APPS[channel][1],
        "notificationId": f"n-{uuid.uuid4().hex}",
        "outTradeNo": order["orderId"],
        "transactionId": transaction_id or f"T{order['orderId']}",
        "totalFen": order["amount"],
        "occurredAt": datetime.now(UTC),
    }
    fields.update(changes)
    return ChannelEvent.model_validate(fields)


def refunded(
    order: dict[str, Any],
    refund: dict[str, Any],
    status: RefundStatus = RefundStatus.SUCCESS,
    **changes: Any,
) -> ChannelEvent:
    """The channel's refund notice for a refund (as the API answers it)."""
    base = paid(order).model_dump(by_alias=True)
    base.update(
        kind=EventKind.REFUND,
        notificationId=f"n-{uuid.uuid4().hex}",
        outRefundNo=refund["refundId"],
        refundId=refund.get("channelRefundId") or f"CR{refund['refundId']}",
        refundFen=refund["amount"],
        refundStatus=status,
    )
    base.update(changes)
    return ChannelEvent.model_validate(base)


def envelope(event: ChannelEvent) -> Envelope:
    return Envelope(
        id=event.message_id(),
        type="channel.notified",
        correlation_id=f"test-{uuid.uuid4().hex[:12]}",
        data=event.model_dump(mode="json", by_alias=True),
    )


async def publish(publisher: KafkaPublisher, names: Topics, events: Sequence[ChannelEvent]) -> None:
    await publisher.send_many(
        [
            OutgoingMessage.of(names.channel_notifications, envelope(e), e.out_trade_no)
            for e in events
        ]
    )


async def settle(pool: asyncpg.Pool, order_id: str) -> None:
    """What settlement will do (a stand-in for its tests): each part's share, less what refunds
    took from pending, pending -> available, and the order marked settled."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE", order_id)
        parts = await conn.fetch(
            "SELECT p.position, p.account_id, p.amount, o.currency FROM order_parts p JOIN orders o USING (order_id)"
            " WHERE order_id = $1 ORDER BY position",
            order_id,
        )
        taken = [0] * len(parts)
        for refund in await conn.fetch(
            "SELECT allocation FROM order_refunds WHERE order_id = $1 AND held"
            " AND source_bucket = 'pending' AND state IN ('PROCESSING', 'SUCCESS')",
            order_id,
        ):
            taken = [t + int(a) for t, a in zip(taken, refund["allocation"], strict=True)]
        postings = []
        for part, took in zip(parts, taken, strict=True):
            currency = part["currency"].strip()
            postings.extend(
                move(
                    part["account_id"],
                    Bucket.PENDING,
                    part["account_id"],
                    Bucket.AVAILABLE,
                    currency,
                    part["amount"] - took,
                )
            )
        if postings:
            entry = JournalEntry(
                new_entry_id(), "settlement", "order", order_id, tuple(postings), "test settle"
            )
            locked = await ledger_store.lock_balances(conn, [p["account_id"] for p in parts])
            await db.write_together(
                conn,
                [
                    *ledger_store.entry_writes([entry], [None]),
                    *ledger_store.balance_writes(apply_entry(locked, entry).values()),
                ],
            )
        await conn.execute("UPDATE orders SET settled_at = now() WHERE order_id = $1", order_id)


async def withdraw(pool: asyncpg.Pool, account_id: str, amount: int) -> None:
    """What a withdrawal does to ``account_id`` (a stand-in): ``amount`` of available leaves."""
    out = system_account("test-withdrawals", "CNY")
    entry = JournalEntry(
        new_entry_id(),
        "test",
        "withdrawal",
        account_id,
        move(account_id, Bucket.AVAILABLE, out, Bucket.AVAILABLE, "CNY", amount),
        "test withdrawal",
    )
    async with pool.acquire() as conn, conn.transaction():
        await ledger_store.ensure_system_accounts(conn, [out])
        locked = await ledger_store.lock_balances(conn, [account_id])
        await db.write_together(
            conn,
            [
                *ledger_store.entry_writes([entry], [None]),
                *ledger_store.balance_writes(apply_entry(locked, entry).values()),
            ],
        )
