"""SQL for bank transfer records and the notification log (the ledger is in ledger_store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from fundhub.notify_ingest.transfer_records import RecordPosition, RecordState

RecordKey = tuple[str, str]  # (app_id, record_id)


async def lock_records(
    conn: asyncpg.Connection, keys: Sequence[RecordKey]
) -> dict[RecordKey, RecordPosition]:
    ordered = sorted(set(keys))
    rows = await conn.fetch(
        "SELECT r.app_id, r.record_id, r.state, r.held_available, r.held_frozen, "
        "r.deducted_amount, r.reversed_amount, r.trans_amount, r.account_id, r.currency "
        "FROM bank_transfer_records r "
        "JOIN unnest($1::text[], $2::text[]) AS k(a, i) ON r.app_id = k.a AND r.record_id = k.i "
        "ORDER BY r.app_id, r.record_id FOR UPDATE OF r",
        [k[0] for k in ordered],
        [k[1] for k in ordered],
    )
    return {
        (r["app_id"], r["record_id"]): RecordPosition(
            state=RecordState(r["state"]),
            held_available=r["held_available"],
            held_frozen=r["held_frozen"],
            deducted_amount=r["deducted_amount"],
            reversed_amount=r["reversed_amount"],
            trans_amount=r["trans_amount"],
            account_id=r["account_id"],
            currency=r["currency"].strip(),
        )
        for r in rows
    }


@dataclass(frozen=True)
class RecordWrite:
    """The record as it stands after a batch; ``fields`` are those of the notice that moved it."""

    app_id: str
    record_id: str
    position: RecordPosition
    fields: dict[str, Any]
    applied: int


_FIELD_COLUMNS = (
    "channel", "node_id", "trans_time", "channel_trade_no", "merchant_name", "merchant_id",
    "cloud_merchant_id", "in_acct_name", "in_acct_bank_name", "in_acct_no", "ccy_code", "fee",
    "post_fee", "bind_status", "deduct_status", "deduct_channel_trade_no", "out_acct_name",
    "out_acct_bank_name", "out_acct_no", "host_flow_no", "host_tx_date", "reverse_flag", "use_ex",
    "remark", "store_list",
)  # fmt: skip
_POSITION_COLUMNS = (
    "state", "held_available", "held_frozen", "deducted_amount", "reversed_amount",
    "account_id", "currency", "trans_amount",
)  # fmt: skip


def _upsert_sql() -> str:
    columns = ("app_id", "record_id", *_POSITION_COLUMNS, *_FIELD_COLUMNS, "notifications_applied")
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    # A later notice only moves the state and the fields that change with it.
    updated = [*_POSITION_COLUMNS, "deduct_status", "deduct_channel_trade_no", "reverse_flag"]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in updated)
    return (
        f"INSERT INTO bank_transfer_records ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT (app_id, record_id) DO UPDATE SET {sets}, "
        "notifications_applied = bank_transfer_records.notifications_applied "
        "+ EXCLUDED.notifications_applied, updated_at = now()"
    )


_UPSERT = _upsert_sql()


async def save_records(conn: asyncpg.Connection, writes: Sequence[RecordWrite]) -> None:
    if not writes:
        return
    await conn.executemany(
        _UPSERT,
        [
            (
                w.app_id,
                w.record_id,
                w.position.state.value,
                w.position.held_available,
                w.position.held_frozen,
                w.position.deducted_amount,
                w.position.reversed_amount,
                w.position.account_id,
                w.position.currency,
                w.position.trans_amount,
                *(w.fields.get(c) for c in _FIELD_COLUMNS),
                w.applied,
            )
            for w in writes
        ],
    )


async def log_notifications(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, str | None, Any, str, Any]]
) -> None:
    """(message_id, app_id, method, record_id, params, outcome, received_at) per message."""
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO bank_notifications "
        "(message_id, app_id, method, record_id, params, outcome, received_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING",
        rows,
    )
