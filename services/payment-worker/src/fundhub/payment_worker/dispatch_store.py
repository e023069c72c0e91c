"""The callback tables: intake from Kafka, leasing due deliveries, recording each attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from fundhub.common.db import BatchInsert
from fundhub.common.inbox import claim
from fundhub.payment_worker.delivery import Delivered, GiveUp, Outcome, RetryAt

CONSUMER = "callback-dispatcher"
# Postgres or the network, not the data: worth retrying the same work after a pause.
INFRA_ERRORS = (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class NewDelivery:
    message_id: str
    pay_id: str
    state: str
    url: str
    key_id: str
    body: bytes


@dataclass(frozen=True)
class DueDelivery:
    delivery_id: int
    pay_id: str
    state: str
    url: str
    key_id: str
    body: bytes
    attempts: int
    created_at: datetime


_INSERT_DELIVERIES = BatchInsert(
    "callback_deliveries",
    [("pay_id", "text"), ("state", "text"), ("url", "text"), ("key_id", "text"), ("body", "bytea")],
    "ON CONFLICT (pay_id, state) DO NOTHING",
)


async def insert_deliveries(conn: asyncpg.Connection, deliveries: Sequence[NewDelivery]) -> int:
    """Inside the caller's transaction: new messages (inbox) become deliveries, once per state."""
    fresh = await claim(conn, CONSUMER, [d.message_id for d in deliveries])
    rows: list[tuple[str, str, str, str, bytes]] = []
    seen: set[str] = set()
    for d in deliveries:
        if d.message_id in fresh and d.message_id not in seen:
            seen.add(d.message_id)
            rows.append((d.pay_id, d.state, d.url, d.key_id, d.body))
    await _INSERT_DELIVERIES.run(conn, rows)
    return len(rows)


async def lease_due(
    pool: asyncpg.Pool, now: datetime, lease_until: datetime, limit: int
) -> list[DueDelivery]:
    """Take due deliveries and push their next attempt to ``lease_until``, in one short tx.

    SKIP LOCKED lets replicas take disjoint sets; the lease keeps them disjoint after the
    commit. If this replica dies mid-attempt, the lease expires and another one retries.
    """
    rows = await pool.fetch(
        """
        WITH due AS (
            SELECT delivery_id FROM callback_deliveries
            WHERE status = 'PENDING' AND next_attempt_at <= $1
            ORDER BY next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        )
        UPDATE callback_deliveries d SET next_attempt_at = $2
        FROM due WHERE d.delivery_id = due.delivery_id
        RETURNING d.delivery_id, d.pay_id, d.state, d.url, d.key_id, d.body, d.attempts,
                  d.created_at
        """,
        now,
        lease_until,
        limit,
    )
    due = [
        DueDelivery(
            delivery_id=r["delivery_id"],
            pay_id=r["pay_id"],
            state=r["state"],
            url=r["url"],
            key_id=r["key_id"],
            body=bytes(r["body"]),
            attempts=r["attempts"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
    due.sort(key=lambda d: d.delivery_id)
    return due


async def record_attempt(
    pool: asyncpg.Pool,
    delivery_id: int,
    attempted_at: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    outcome: Outcome,
) -> None:
    """The attempt and its consequence together: the history never disagrees with the status."""
    if isinstance(outcome, Delivered):
        status, next_at, delivered_at = "DELIVERED", None, outcome.at
    elif isinstance(outcome, RetryAt):
        status, next_at, delivered_at = "PENDING", outcome.at, None
    elif isinstance(outcome, GiveUp):
        status, next_at, delivered_at = "GAVE_UP", None, None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO callback_attempts "
            "(delivery_id, attempted_at, status_code, error, duration_ms) "
            "VALUES ($1, $2, $3, $4, $5)",
            delivery_id,
            attempted_at,
            status_code,
            error,
            duration_ms,
        )
        await conn.execute(
            "UPDATE callback_deliveries SET attempts = attempts + 1, status = $2, "
            "next_attempt_at = coalesce($3, next_attempt_at), "
            "delivered_at = coalesce($4, delivered_at) "
            "WHERE delivery_id = $1",
            delivery_id,
            status,
            next_at,
            delivered_at,
        )


async def sealed_webhook_secret(pool: asyncpg.Pool, key_id: str) -> bytes | None:
    value = await pool.fetchval(
        "SELECT webhook_secret_sealed FROM api_keys WHERE key_id = $1", key_id
    )
    return None if value is None else bytes(value)
