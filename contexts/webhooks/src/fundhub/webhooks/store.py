"""The callback tables: intake from Kafka, leasing due deliveries, recording each attempt, and
what the API and the operator read and replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.common.clock import iso_utc_ms
from fundhub.common.db import BatchInsert, Connection, Pool
from fundhub.common.inbox import claim
from fundhub.common.sampling import Probe
from fundhub.webhooks.metrics import OLDEST_PENDING_AGE, PENDING
from fundhub.webhooks.policy import Delivered, GiveUp, Outcome, RetryAt, public_error

CONSUMER = "callback-dispatcher"


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


async def insert_deliveries(conn: Connection, deliveries: Sequence[NewDelivery]) -> int:
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
    pool: Pool, now: datetime, lease_until: datetime, limit: int
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
    pool: Pool,
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


async def deliveries_of(pool: Pool, pay_id: str) -> list[dict[str, Any]]:
    """The payout's callback deliveries, oldest first, each with its attempts in order."""
    async with pool.acquire() as conn:
        deliveries = await conn.fetch(
            "SELECT delivery_id, state, url, status, attempts, next_attempt_at, "
            "delivered_at, created_at FROM callback_deliveries "
            "WHERE pay_id = $1 ORDER BY delivery_id",
            pay_id,
        )
        attempts = await conn.fetch(
            "SELECT delivery_id, attempted_at, status_code, error, duration_ms "
            "FROM callback_attempts WHERE delivery_id = ANY($1::bigint[]) "
            "ORDER BY attempt_id",
            [d["delivery_id"] for d in deliveries],
        )
    by_delivery: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_delivery.setdefault(a["delivery_id"], []).append(
            {
                "at": iso_utc_ms(a["attempted_at"]),
                "statusCode": a["status_code"],
                "error": public_error(a["error"]),
                "durationMs": a["duration_ms"],
            }
        )
    return [
        {
            "state": d["state"],
            "url": d["url"],
            "status": d["status"],
            "attemptCount": d["attempts"],
            "nextAttemptAt": iso_utc_ms(d["next_attempt_at"]) if d["status"] == "PENDING" else None,
            "deliveredAt": iso_utc_ms(d["delivered_at"]) if d["delivered_at"] else None,
            "createdAt": iso_utc_ms(d["created_at"]),
            "attempts": by_delivery.get(d["delivery_id"], []),
        }
        for d in deliveries
    ]


async def replay(conn: Connection, pay_id: str) -> int:
    """Every delivery of the payout back to PENDING, due now; the sender sends them again.

    The one statement behind ``POST /v1/payouts/{payId}/callbacks/replay`` and
    ``fundhub callbacks replay``.
    """
    result = await conn.execute(
        "UPDATE callback_deliveries SET status = 'PENDING', next_attempt_at = now() "
        "WHERE pay_id = $1",
        pay_id,
    )
    return int(result.split()[-1])


# Past this many pending callbacks a client is down for good; counting further walks them all.
PENDING_CAP = 100_000
_PENDING = (
    "SELECT count(*) AS pending, extract(epoch FROM now() - min(created_at)) AS oldest_s"
    " FROM (SELECT created_at FROM callback_deliveries WHERE status = 'PENDING' LIMIT $1) p"
)


async def sample_pending(conn: Connection) -> None:
    """From the partial index ``callback_deliveries_due`` (PENDING rows only). Given-up
    deliveries are counted as they happen (``fundhub_callbacks_gave_up_total``)."""
    row = await conn.fetchrow(_PENDING, PENDING_CAP)
    assert row is not None
    PENDING.set(row["pending"])
    OLDEST_PENDING_AGE.set(max(0.0, float(row["oldest_s"] or 0)))


def pending_probe() -> Probe:
    return Probe("callbacks", sample_pending, (PENDING, OLDEST_PENDING_AGE))
