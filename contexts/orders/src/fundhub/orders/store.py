"""The orders tables' SQL: orders and their parts, refunds, exceptions; reads, locks, writes.

Locks are always taken in one order, everywhere (orders by id, then refunds by id, then the
ledger's balances by account): the gateway's refund admission, notify-ingest's consumer of
the channels' notifications and payment-worker's refund handling never deadlock each other.
Settlement, which marks orders settled, takes the order's row first too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fundhub.channels.events import Channel
from fundhub.common.db import ArrayStatement, BatchInsert, Connection, Row, Write
from fundhub.common.metrics import PAST_DEADLINE
from fundhub.ledger.rules import Bucket
from fundhub.orders.postings import Part
from fundhub.orders.states import Order, OrderState, Refund, RefundState

OrderRow = dict[str, Any]
RefundRow = dict[str, Any]

ORDER_COLUMNS = (
    "order_id, key_id, order_no, fingerprint, amount, currency, channel, app_id, merchant_ref, "
    "description, platform_fee, notify_url, state, error_code, message, depository_ref, "
    "registered_at, payment_params, transaction_id, paid_at, settling_id, settled_at, "
    "created_at, updated_at"
)
PART_COLUMNS = "order_id, position, merchant_id, account_id, amount"
REFUND_COLUMNS = (
    "refund_id, order_id, refund_no, fingerprint, amount, allocation, reason, state, "
    "error_code, message, held, source_bucket, channel_refund_id, submitted_at, next_poll_at, "
    "poll_attempts, deadline_at, alerted_at, created_at, updated_at, finished_at"
)


def qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _order(record: Row) -> OrderRow:
    row = dict(record)
    row["currency"] = str(row["currency"]).strip()
    return row


def _refund(record: Row) -> RefundRow:
    row = dict(record)
    row["allocation"] = [int(a) for a in row["allocation"]]
    return row


def to_parts(rows: Iterable[Row]) -> tuple[Part, ...]:
    return tuple(
        Part(int(r["position"]), r["merchant_id"], r["account_id"], int(r["amount"]))
        for r in sorted(rows, key=lambda r: int(r["position"]))
    )


def to_order(row: Row, parts: Iterable[Row]) -> Order:
    return Order(
        order_id=row["order_id"],
        state=OrderState(row["state"]),
        amount=row["amount"],
        currency=str(row["currency"]).strip(),
        channel=Channel(row["channel"]),
        app_id=row["app_id"],
        merchant_ref=row["merchant_ref"],
        parts=to_parts(parts),
        transaction_id=row["transaction_id"],
        settled=row["settled_at"] is not None,
    )


def to_refund(row: Row) -> Refund:
    source = row["source_bucket"]
    return Refund(
        refund_id=row["refund_id"],
        amount=row["amount"],
        allocation=tuple(int(a) for a in row["allocation"]),
        state=RefundState(row["state"]),
        held=row["held"],
        source=Bucket(source) if source else None,
        channel_refund_id=row["channel_refund_id"],
        error_code=row["error_code"],
        message=row["message"],
    )


# --- reads -------------------------------------------------------------------------------------


async def order_by_no(conn: Connection, key_id: str, order_no: str) -> OrderRow | None:
    record = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE key_id = $1 AND order_no = $2",
        key_id,
        order_no,
    )
    return _order(record) if record is not None else None


async def order_by_id(conn: Connection, order_id: str) -> OrderRow | None:
    record = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1", order_id
    )
    return _order(record) if record is not None else None


async def parts_of(conn: Connection, order_ids: Iterable[str]) -> dict[str, list[OrderRow]]:
    records = await conn.fetch(
        f"SELECT {PART_COLUMNS} FROM order_parts WHERE order_id = ANY($1::text[])"
        " ORDER BY order_id, position",
        sorted(set(order_ids)),
    )
    found: dict[str, list[OrderRow]] = {}
    for r in records:
        found.setdefault(r["order_id"], []).append(dict(r))
    return found


async def refunds_of(conn: Connection, order_id: str, lock: bool = False) -> list[RefundRow]:
    """The order's refunds, oldest first (locked, in id order, with ``lock``), each with its
    depository debit's ``debit_state``, ``debit_error_code`` and ``debit_finished_at`` (None
    for a refund made before the order's split: it has no debit)."""
    records = await conn.fetch(
        f"SELECT {qualified('r', REFUND_COLUMNS)}, d.state AS debit_state,"
        " d.error_code AS debit_error_code, d.finished_at AS debit_finished_at"
        " FROM order_refunds r LEFT JOIN order_refund_debits d ON d.refund_id = r.refund_id"
        " WHERE r.order_id = $1 ORDER BY r.refund_id" + (" FOR UPDATE OF r" if lock else ""),
        order_id,
    )
    return [_refund(r) for r in records]


# --- locks -------------------------------------------------------------------------------------


async def lock_orders(conn: Connection, order_ids: Iterable[str]) -> dict[str, OrderRow]:
    records = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1::text[])"
        " ORDER BY order_id FOR UPDATE",
        sorted(set(order_ids)),
    )
    return {r["order_id"]: _order(r) for r in records}


async def lock_refunds(conn: Connection, refund_ids: Iterable[str]) -> dict[str, RefundRow]:
    records = await conn.fetch(
        f"SELECT {REFUND_COLUMNS} FROM order_refunds WHERE refund_id = ANY($1::text[])"
        " ORDER BY refund_id FOR UPDATE",
        sorted(set(refund_ids)),
    )
    return {r["refund_id"]: _refund(r) for r in records}


# --- writes ------------------------------------------------------------------------------------

_INSERT_ORDER = f"""
INSERT INTO orders (order_id, key_id, order_no, fingerprint, amount, currency, channel, app_id,
                    merchant_ref, description, platform_fee, notify_url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (key_id, order_no) DO NOTHING
RETURNING {ORDER_COLUMNS}
"""
_INSERT_PARTS = BatchInsert(
    "order_parts",
    (
        ("order_id", "text"),
        ("position", "smallint"),
        ("merchant_id", "text"),
        ("account_id", "text"),
        ("amount", "bigint"),
    ),
)


def part_rows(order_id: str, parts: Sequence[Part]) -> list[OrderRow]:
    """The parts as ``parts_of`` reads them back."""
    return [
        {
            "order_id": order_id,
            "position": p.position,
            "merchant_id": p.merchant_id,
            "account_id": p.account_id,
            "amount": p.amount,
        }
        for p in parts
    ]


async def insert_order(
    conn: Connection, values: Sequence[Any], parts: Sequence[Part]
) -> OrderRow | None:
    """The order (``values`` in ``_INSERT_ORDER``'s order) and its parts; None when the
    tenant's orderNo exists already (committed: ON CONFLICT waits for a concurrent insert)."""
    record = await conn.fetchrow(_INSERT_ORDER, *values)
    if record is None:
        return None
    order_id = record["order_id"]
    await _INSERT_PARTS.run(
        conn, [(order_id, p.position, p.merchant_id, p.account_id, p.amount) for p in parts]
    )
    return _order(record)


async def note_registered(conn: Connection, order_id: str, depository_ref: str) -> None:
    await conn.execute(
        "UPDATE orders SET depository_ref = coalesce(depository_ref, $2),"
        " registered_at = coalesce(registered_at, now()), updated_at = now()"
        " WHERE order_id = $1",
        order_id,
        depository_ref,
    )


async def note_payment(
    conn: Connection, order_id: str, params: dict[str, str], depository_ref: str | None = None
) -> OrderRow | None:
    """The channel's payment exists: its params (the first ones stay), and the order awaits
    the payer unless a notification moved it on meanwhile; with ``depository_ref``, the
    depository's registration too (as ``note_registered``). The order's row as it now is."""
    record = await conn.fetchrow(
        "UPDATE orders SET payment_params = coalesce(payment_params, $2::jsonb),"
        " state = CASE WHEN state = 'CREATED' THEN 'AWAITING_PAYMENT' ELSE state END,"
        " depository_ref = coalesce(depository_ref, $3),"
        " registered_at = CASE WHEN $3::text IS NULL THEN registered_at"
        " ELSE coalesce(registered_at, now()) END,"
        f" updated_at = now() WHERE order_id = $1 RETURNING {ORDER_COLUMNS}",
        order_id,
        params,
        depository_ref,
    )
    return _order(record) if record is not None else None


async def fail_order(conn: Connection, order_id: str, code: str, message: str) -> None:
    """The depository or the channel refused the order: FAILED, unless it moved on."""
    await conn.execute(
        "UPDATE orders SET state = 'FAILED', error_code = $2, message = $3, updated_at = now()"
        " WHERE order_id = $1 AND state = 'CREATED'",
        order_id,
        code,
        message,
    )


_UPDATE_ORDERS = ArrayStatement(
    "UPDATE orders o SET state = u.state, transaction_id = u.transaction_id,"
    " paid_at = u.paid_at, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])"
    " AS u(order_id, state, transaction_id, paid_at) WHERE o.order_id = u.order_id",
    ("text", "text", "text", "timestamptz"),
)


def order_writes(rows: Sequence[OrderRow]) -> list[Write]:
    """What the channels' notifications change on orders, as the rows stand."""
    return [
        (
            _UPDATE_ORDERS,
            [(r["order_id"], r["state"], r["transaction_id"], r["paid_at"]) for r in rows],
        )
    ]


_INSERT_REFUND = f"""
INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount, allocation,
                           reason, next_poll_at, deadline_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8),
        now() + make_interval(secs => $9))
RETURNING {REFUND_COLUMNS}
"""


async def insert_refund(conn: Connection, values: Sequence[Any]) -> RefundRow:
    record = await conn.fetchrow(_INSERT_REFUND, *values)
    assert record is not None
    return _refund(record)


_UPDATE_REFUNDS = ArrayStatement(
    "UPDATE order_refunds r SET state = u.state, error_code = u.error_code,"
    " message = u.message, held = u.held, source_bucket = u.source_bucket,"
    " channel_refund_id = u.channel_refund_id, submitted_at = u.submitted_at,"
    " next_poll_at = u.next_poll_at, finished_at = u.finished_at, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[],"
    " $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])"
    " AS u(refund_id, state, error_code, message, held, source_bucket, channel_refund_id,"
    " submitted_at, next_poll_at, finished_at) WHERE r.refund_id = u.refund_id",
    (
        "text",
        "text",
        "text",
        "text",
        "boolean",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
    ),
)


def refund_writes(rows: Sequence[RefundRow]) -> list[Write]:
    return [
        (
            _UPDATE_REFUNDS,
            [
                (
                    r["refund_id"],
                    r["state"],
                    r["error_code"],
                    r["message"],
                    r["held"],
                    r["source_bucket"],
                    r["channel_refund_id"],
                    r["submitted_at"],
                    r["next_poll_at"],
                    r["finished_at"],
                )
                for r in rows
            ],
        )
    ]


_INSERT_EXCEPTIONS = BatchInsert(
    "order_exceptions",
    (
        ("message_id", "text"),
        ("channel", "text"),
        ("app_id", "text"),
        ("out_trade_no", "text"),
        ("out_refund_no", "text"),
        ("transaction_id", "text"),
        ("kind", "text"),
        ("reason", "text"),
        ("event", "jsonb"),
        ("order_id", "text"),
    ),
    "ON CONFLICT (message_id) DO NOTHING",
)


def exception_writes(rows: Sequence[Sequence[Any]]) -> list[Write]:
    """Rows in ``_INSERT_EXCEPTIONS``' column order."""
    return [(_INSERT_EXCEPTIONS, rows)]


# --- the refund poller -------------------------------------------------------------------------


async def claim_due_refunds(
    conn: Connection, limit: int, base_s: float, max_s: float
) -> list[RefundRow]:
    """Held PROCESSING refunds due a look, their next look pushed back already (the caller
    commits before it calls the channel: a slow channel never holds the rows locked)."""
    records = await conn.fetch(
        f"""
        WITH due AS (
            SELECT refund_id FROM order_refunds
            WHERE state = 'PROCESSING' AND held AND next_poll_at <= now()
            ORDER BY next_poll_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE order_refunds r SET poll_attempts = r.poll_attempts + 1,
            next_poll_at = now() + make_interval(
                secs => least($3::float8, $2::float8 * power(2, least(r.poll_attempts, 30)))),
            updated_at = now()
        FROM due WHERE r.refund_id = due.refund_id
        RETURNING {qualified("r", REFUND_COLUMNS)}
        """,
        limit,
        base_s,
        max_s,
    )
    return [_refund(r) for r in records]


async def mark_overdue_refunds(conn: Connection, limit: int) -> list[RefundRow]:
    """PROCESSING refunds past their deadline, not alerted yet; marks them alerted."""
    records = await conn.fetch(
        f"""
        WITH overdue AS (
            SELECT refund_id FROM order_refunds
            WHERE state = 'PROCESSING' AND deadline_at < now() AND alerted_at IS NULL
            LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE order_refunds r SET alerted_at = now()
        FROM overdue WHERE r.refund_id = overdue.refund_id
        RETURNING {qualified("r", REFUND_COLUMNS)}
        """,
        limit,
    )
    return [_refund(r) for r in records]


# A few hundred late refunds already page someone; counting past that would walk them all.
PAST_DEADLINE_CAP = 10_000


async def sample_refunds_past_deadline(conn: Connection) -> None:
    """``fundhub_processing_past_deadline{kind="refund"}``: a refund has a deadline once its
    money is held and it went to the channel, so the partial index ``order_refunds_to_poll``
    (PROCESSING and held) holds every candidate."""
    late = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM order_refunds"
        " WHERE state = 'PROCESSING' AND held AND deadline_at < now() LIMIT $1) late",
        PAST_DEADLINE_CAP,
    )
    PAST_DEADLINE.labels("refund").set(late)
