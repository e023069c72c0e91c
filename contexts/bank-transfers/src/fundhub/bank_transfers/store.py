"""SQL for bank transfer records and the notification log (the ledger is in ledger_store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fundhub.bank_transfers.records import RecordPosition, RecordState
from fundhub.common.db import BatchInsert, Step, Write

RecordKey = tuple[str, str]  # (app_id, record_id)


_LOCK_RECORDS = (
    "SELECT r.app_id, r.record_id, r.state, r.held_available, r.held_frozen, "
    "r.deducted_amount, r.reversed_amount, r.trans_amount, r.account_id, r.currency "
    "FROM bank_transfer_records r "
    "JOIN unnest($1::text[], $2::text[]) AS k(a, i) ON r.app_id = k.a AND r.record_id = k.i "
    "ORDER BY r.app_id, r.record_id FOR UPDATE OF r"
)


def lock_records_step(keys: Sequence[RecordKey]) -> Step:
    """The records' rows, locked in key order, as a step of ``db.run_together``."""
    ordered = sorted(set(keys))
    return Step(_LOCK_RECORDS, ([k[0] for k in ordered], [k[1] for k in ordered]))


def positions_from(rows: Iterable[Mapping[str, Any]]) -> dict[RecordKey, RecordPosition]:
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


_FIELD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("channel", "text"), ("node_id", "text"), ("trans_time", "timestamptz"),
    ("channel_trade_no", "text"), ("merchant_name", "text"), ("merchant_id", "text"),
    ("cloud_merchant_id", "text"), ("in_acct_name", "text"), ("in_acct_bank_name", "text"),
    ("in_acct_no", "text"), ("ccy_code", "text"), ("fee", "bigint"), ("post_fee", "bigint"),
    ("bind_status", "text"), ("deduct_status", "text"), ("deduct_channel_trade_no", "text"),
    ("out_acct_name", "text"), ("out_acct_bank_name", "text"), ("out_acct_no", "text"),
    ("host_flow_no", "text"), ("host_tx_date", "date"), ("reverse_flag", "text"),
    ("use_ex", "text"), ("remark", "text"), ("store_list", "jsonb"),
)  # fmt: skip
_POSITION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("state", "text"), ("held_available", "bigint"), ("held_frozen", "bigint"),
    ("deducted_amount", "bigint"), ("reversed_amount", "bigint"), ("account_id", "text"),
    ("currency", "text"), ("trans_amount", "bigint"),
)  # fmt: skip
_RECORD_COLUMNS = (
    ("app_id", "text"),
    ("record_id", "text"),
    *_POSITION_COLUMNS,
    *_FIELD_COLUMNS,
    ("notifications_applied", "integer"),
)
# A later notice only moves the state and the fields that change with it.
_UPDATED = [n for n, _ in _POSITION_COLUMNS] + [
    "deduct_status",
    "deduct_channel_trade_no",
    "reverse_flag",
]
_UPSERT = BatchInsert(
    "bank_transfer_records",
    _RECORD_COLUMNS,
    "ON CONFLICT (app_id, record_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)
    + ", notifications_applied = bank_transfer_records.notifications_applied "
    "+ EXCLUDED.notifications_applied, updated_at = now()",
)
_NOTIFICATION_COLUMNS = (
    ("message_id", "text"),
    ("app_id", "text"),
    ("method", "text"),
    ("record_id", "text"),
    ("params", "jsonb"),
    ("outcome", "text"),
    ("received_at", "timestamptz"),
)
_LOG = BatchInsert(
    "bank_notifications", _NOTIFICATION_COLUMNS, "ON CONFLICT (message_id) DO NOTHING"
)


def record_writes(writes: Sequence[RecordWrite]) -> list[Write]:
    rows = [
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
            *(w.fields.get(c) for c, _ in _FIELD_COLUMNS),
            w.applied,
        )
        for w in writes
    ]
    return [(_UPSERT, rows)]


def notification_writes(
    rows: Sequence[tuple[str, str, str, str | None, Any, str, Any]],
) -> list[Write]:
    """(message_id, app_id, method, record_id, params, outcome, received_at) per message."""
    return [(_LOG, rows)]


_EXCEPTION_COLUMNS = (
    ("app_id", "text"),
    ("record_id", "text"),
    ("account_id", "text"),
    ("holder", "text"),
    ("holder_state", "text"),
    ("held_in", "text"),
    ("currency", "text"),
    ("amount", "bigint"),
)
_EXCEPTION = BatchInsert(
    "bank_transfer_exceptions", _EXCEPTION_COLUMNS, "ON CONFLICT (app_id, record_id) DO NOTHING"
)


def exception_writes(
    rows: Sequence[tuple[str, str, str, str, str, str, str, int]],
) -> list[Write]:
    """(app_id, record_id, account_id, holder, holder_state, held_in, currency, amount): a
    credit held in suspense because its account may no longer take money."""
    return [(_EXCEPTION, rows)]
