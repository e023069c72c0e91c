"""The settlements table's SQL (the ledger's is in ``ledger.store``, orders' in ``seams``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from fundhub.common import db
from fundhub.common.db import ArrayStatement, Connection, Pool, Row, Write
from fundhub.settlement.amounts import ReceiverAmount
from fundhub.settlement.states import Settlement, SettlementState

SettlementRow = dict[str, Any]
# Woken when a settlement is recorded, so the scheduler registers it without waiting a tick.
CHANNEL = "fundhub_settlements"
ID_PREFIX = "STL"
_COLUMNS = (
    "settlement_id, order_id, key_id, order_no, trigger, state, currency, amount, parts, "
    "notify_url, bank_app_id, bank_split_id, error_code, message, attempts, next_attempt_at, "
    "created_at, updated_at, finished_at"
)


def new_settlement_id(day: date, sequence: int) -> str:
    """``STL`` + yyyymmdd + 10 digits: the depository's split_request_id for the attempt."""
    if not 0 <= sequence < 10**10:
        raise ValueError("sequence does not fit 10 digits")
    return f"{ID_PREFIX}{day:%Y%m%d}{sequence:010d}"


async def next_ids(conn: Connection, day: date, count: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT nextval('settlement_seq') AS n FROM generate_series(1, $1)", count
    )
    return [new_settlement_id(day, int(r["n"])) for r in rows]


def _row(record: Row) -> SettlementRow:
    row = dict(record)
    row["currency"] = str(row["currency"]).strip()
    if isinstance(row["parts"], str):
        row["parts"] = db.json_value(row["parts"])
    return row


def to_settlement(row: SettlementRow) -> Settlement:
    return Settlement(
        settlement_id=row["settlement_id"],
        order_no=row["order_no"],
        currency=row["currency"],
        receivers=tuple(
            ReceiverAmount(p["merchantId"], p["accountId"], p["amount"]) for p in row["parts"]
        ),
        state=SettlementState(row["state"]),
        bank_split_id=row["bank_split_id"],
        error_code=row["error_code"],
        message=row["message"],
    )


def parts_json(amounts: Sequence[ReceiverAmount], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The parts as stored: who, which account, the depository's name for it, how much."""
    return [
        {
            "merchantId": a.merchant_id,
            "accountId": a.account_id,
            "memberName": names.get(a.merchant_id, a.merchant_id)
            if a.merchant_id
            else "platform fee",
            "amount": a.amount,
        }
        for a in amounts
    ]


_INSERT = """
INSERT INTO settlements (settlement_id, order_id, key_id, order_no, trigger, currency, amount,
                         parts, notify_url, bank_app_id, next_attempt_at)
SELECT u.settlement_id, u.order_id, u.key_id, u.order_no, u.trigger, u.currency, u.amount,
       u.parts::jsonb, u.notify_url, u.bank_app_id, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::text[], $10::text[])
     AS u(settlement_id, order_id, key_id, order_no, trigger, currency, amount, parts,
          notify_url, bank_app_id)
ON CONFLICT (order_id) WHERE state <> 'REFUSED' DO NOTHING
RETURNING {columns}
"""


async def insert(conn: Connection, rows: Sequence[SettlementRow]) -> list[SettlementRow]:
    """New settlements (PENDING, due now); an order that has a live or settled one already
    keeps it (nothing inserted for it). Wakes the scheduler once the caller commits. The
    caller marks the orders settling (``seams.mark_settling``) in the same transaction."""
    if not rows:
        return []
    fields = (
        "settlement_id",
        "order_id",
        "key_id",
        "order_no",
        "trigger",
        "currency",
        "amount",
        "parts",
        "notify_url",
        "bank_app_id",
    )
    columns = [[db.json_text(r[f]) if f == "parts" else r[f] for r in rows] for f in fields]
    inserted = await conn.fetch(_INSERT.format(columns=_COLUMNS), *columns)
    await conn.execute(f"SELECT pg_notify('{CHANNEL}', '')")
    return [_row(r) for r in inserted]


async def latest_of_order(conn: Connection | Pool, order_id: str) -> SettlementRow | None:
    """The order's live or settled settlement, else its last refused one."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM settlements WHERE order_id = $1 "
        "ORDER BY (state <> 'REFUSED') DESC, created_at DESC LIMIT 1",
        order_id,
    )
    return None if row is None else _row(row)


async def latest_of_orders(conn: Connection, order_ids: Iterable[str]) -> dict[str, SettlementRow]:
    """``latest_of_order`` of each order that has a settlement, in one statement."""
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (order_id) {_COLUMNS} FROM settlements "
        "WHERE order_id = ANY($1::text[]) "
        "ORDER BY order_id, (state <> 'REFUSED') DESC, created_at DESC",
        sorted(set(order_ids)),
    )
    return {r["order_id"]: _row(r) for r in rows}


async def lock(conn: Connection, settlement_ids: Iterable[str]) -> dict[str, SettlementRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM settlements WHERE settlement_id = ANY($1::text[]) "
        "ORDER BY settlement_id FOR UPDATE",
        sorted(set(settlement_ids)),
    )
    return {r["settlement_id"]: _row(r) for r in rows}


async def order_ids_of(conn: Connection, settlement_ids: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT settlement_id, order_id FROM settlements WHERE settlement_id = ANY($1::text[])",
        sorted(set(settlement_ids)),
    )
    return {r["settlement_id"]: r["order_id"] for r in rows}


async def claim_due(
    conn: Connection, limit: int, base_s: float, max_s: float
) -> list[SettlementRow]:
    """PENDING and PROCESSING settlements due a call to the bank, their next call already pushed
    back (committed by the caller before it calls, so a slow bank holds no lock and a crash
    only delays the call). SKIP LOCKED lets several schedulers share the work."""
    rows = await conn.fetch(
        f"""
        WITH due AS (
            SELECT settlement_id FROM settlements
            WHERE state IN ('PENDING', 'PROCESSING') AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE settlements s SET attempts = s.attempts + 1,
            next_attempt_at = now() + make_interval(
                secs => least($3::float8, $2::float8 * power(2, least(s.attempts, 30)))),
            updated_at = now()
        FROM due WHERE s.settlement_id = due.settlement_id
        RETURNING {", ".join("s." + c.strip() for c in _COLUMNS.split(","))}
        """,
        limit,
        base_s,
        max_s,
    )
    return [_row(r) for r in rows]


_UPDATE = ArrayStatement(
    "UPDATE settlements s SET state = u.state, bank_split_id = u.bank_split_id, "
    "error_code = u.error_code, message = u.message, finished_at = u.finished_at, "
    "next_attempt_at = u.next_attempt_at, updated_at = now() "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::timestamptz[], $7::timestamptz[]) "
    "AS u(settlement_id, state, bank_split_id, error_code, message, finished_at, next_attempt_at) "
    "WHERE s.settlement_id = u.settlement_id",
    ("text", "text", "text", "text", "text", "timestamptz", "timestamptz"),
)


def settlement_writes(rows: Sequence[SettlementRow]) -> list[Write]:
    return [
        (
            _UPDATE,
            [
                (
                    r["settlement_id"],
                    r["state"],
                    r["bank_split_id"],
                    r["error_code"],
                    r["message"],
                    r["finished_at"],
                    r["next_attempt_at"],
                )
                for r in rows
            ],
        )
    ]
