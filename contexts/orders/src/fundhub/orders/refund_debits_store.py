"""The refund debits' SQL: written with the refund's SUCCESS, claimed by the driver, and each
answer of the bank recorded (a final state is never left)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fundhub.common.db import BatchInsert, Connection, Write, json_value
from fundhub.orders.refund_debits import RefundDebit

DebitRow = dict[str, Any]

_INSERT = BatchInsert(
    "order_refund_debits",
    (
        ("refund_id", "text"),
        ("order_id", "text"),
        ("order_no", "text"),
        ("settlement_id", "text"),
        ("currency", "text"),
        ("amount", "bigint"),
        ("members", "jsonb"),
    ),
    "ON CONFLICT (refund_id) DO NOTHING",
)


def debit_writes(debits: Sequence[RefundDebit]) -> list[Write]:
    """Inside the transaction that makes the refunds SUCCESS: the debit exists iff it did."""
    rows = [
        (
            d.refund_id,
            d.order_id,
            d.order_no,
            d.settlement_id,
            d.currency,
            d.amount,
            [m.to_json() for m in d.members],
        )
        for d in debits
    ]
    return [(_INSERT, rows)] if rows else []


async def claim_due(conn: Connection, limit: int, base_s: float, max_s: float) -> list[DebitRow]:
    """Debits due for a call, their next call pushed back (exponential, capped) before the
    commit that precedes any call: replicas share the work, a crash only delays a call."""
    records = await conn.fetch(
        "UPDATE order_refund_debits d SET attempts = d.attempts + 1, updated_at = now(),"
        " next_attempt_at = now() + make_interval(secs => least($3::float8,"
        "   $2::float8 * power(2, least(d.attempts, 20))))"
        " WHERE d.refund_id IN (SELECT refund_id FROM order_refund_debits"
        "   WHERE state IN ('PENDING', 'PROCESSING') AND next_attempt_at <= now()"
        "   ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING d.refund_id, d.order_id, d.order_no, d.settlement_id, d.currency, d.amount,"
        " d.members::text AS members, d.state, d.attempts",
        limit,
        base_s,
        max_s,
    )
    # Read as text: a pool without the jsonb codec would give the JSON's text anyway.
    return [{**dict(r), "members": json_value(r["members"])} for r in records]


async def record(
    conn: Connection,
    refund_id: str,
    state: str,
    *,
    bank_debit_id: str | None = None,
    error_code: str | None = None,
    reason: str | None = None,
    finished_at: datetime | None = None,
) -> bool:
    """The bank's word on a debit; False when it was final already (a late answer)."""
    done = await conn.fetchval(
        "UPDATE order_refund_debits SET state = $2,"
        " bank_debit_id = coalesce($3, bank_debit_id), error_code = $4, reason = $5,"
        " finished_at = $6, updated_at = now()"
        " WHERE refund_id = $1 AND state IN ('PENDING', 'PROCESSING') RETURNING true",
        refund_id,
        state,
        bank_debit_id,
        error_code,
        reason,
        finished_at,
    )
    return bool(done)
