"""The payouts table's SQL for the worker (the ledger's is in ``fundhub.ledger.store``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from fundhub.common.db import ArrayStatement, Connection, Pool, Write
from fundhub.common.metrics import PAST_DEADLINE
from fundhub.payouts.states import Payout, PayoutState

PayoutRow = dict[str, Any]

# What a payout's answer to the API shows (``wire.payout_body``), and everything the worker reads.
WIRE_COLUMNS = (
    "pay_id, key_id, request_id, supplier_id, payer_account_id, amount, currency, state, "
    "error_code, message, bank_txn_id, extension, callback_url, created_at, finished_at"
)
_COLUMNS = WIRE_COLUMNS + (
    ", payee, purpose, held, submitted_at, next_poll_at, poll_attempts, deadline_at, alerted_at, "
    "bank_app_id"
)


def qualified(alias: str, columns: str = _COLUMNS) -> str:
    """The column list with every name prefixed by a table alias (``p.pay_id, p.key_id, ...``)."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _row(record: asyncpg.Record) -> PayoutRow:
    row = dict(record)
    row["currency"] = str(row["currency"]).strip()
    return row


def to_payout(row: PayoutRow) -> Payout:
    return Payout(
        pay_id=row["pay_id"],
        payer_account_id=row["payer_account_id"],
        currency=row["currency"],
        amount=row["amount"],
        state=PayoutState(row["state"]),
        error_code=row["error_code"],
        message=row["message"],
        bank_txn_id=row["bank_txn_id"],
    )


async def lock_payouts(conn: Connection, pay_ids: Iterable[str]) -> dict[str, PayoutRow]:
    """Lock in payId order, so that concurrent transactions cannot deadlock on them."""
    records = await conn.fetch(
        f"SELECT {_COLUMNS} FROM payouts WHERE pay_id = ANY($1::text[]) ORDER BY pay_id FOR UPDATE",
        sorted(set(pay_ids)),
    )
    return {r["pay_id"]: _row(r) for r in records}


_UPDATE = ArrayStatement(
    "UPDATE payouts p SET state = u.state, error_code = u.error_code, message = u.message, "
    "bank_txn_id = u.bank_txn_id, held = u.held, finished_at = u.finished_at, "
    "submitted_at = u.submitted_at, next_poll_at = u.next_poll_at, deadline_at = u.deadline_at, "
    "bank_app_id = coalesce(u.bank_app_id, p.bank_app_id), updated_at = now() "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[], "
    "$7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[]) "
    "AS u(pay_id, state, error_code, message, bank_txn_id, held, finished_at, submitted_at, "
    "next_poll_at, deadline_at, bank_app_id) WHERE p.pay_id = u.pay_id",
    (
        "text",
        "text",
        "text",
        "text",
        "text",
        "boolean",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
    ),
)


def payout_writes(rows: Sequence[PayoutRow]) -> list[Write]:
    """The rows' mutable columns as they stand, for ``db.write_together``."""
    return [
        (
            _UPDATE,
            [
                (
                    r["pay_id"],
                    r["state"],
                    r["error_code"],
                    r["message"],
                    r["bank_txn_id"],
                    r["held"],
                    r["finished_at"],
                    r["submitted_at"],
                    r["next_poll_at"],
                    r["deadline_at"],
                    r.get("bank_app_id"),
                )
                for r in rows
            ],
        )
    ]


async def claim_due(conn: Connection, limit: int, base_s: float, max_s: float) -> list[PayoutRow]:
    """Held PROCESSING payouts due a look, their next look already pushed back (committed by
    the caller before it calls the bank, so a slow bank never holds the rows locked)."""
    records = await conn.fetch(
        f"""
        WITH due AS (
            SELECT pay_id FROM payouts
            WHERE state = 'PROCESSING' AND held AND next_poll_at <= now()
            ORDER BY next_poll_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE payouts p SET poll_attempts = p.poll_attempts + 1,
            next_poll_at = now() + make_interval(
                secs => least($3::float8, $2::float8 * power(2, least(p.poll_attempts, 30)))),
            updated_at = now()
        FROM due WHERE p.pay_id = due.pay_id
        RETURNING {qualified("p")}
        """,
        limit,
        base_s,
        max_s,
    )
    return [_row(r) for r in records]


async def mark_overdue(conn: Connection, limit: int) -> list[PayoutRow]:
    """PROCESSING payouts past their deadline and not alerted yet; marks them alerted."""
    records = await conn.fetch(
        f"""
        WITH overdue AS (
            SELECT pay_id FROM payouts
            WHERE state = 'PROCESSING' AND deadline_at < now() AND alerted_at IS NULL
            LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE payouts p SET alerted_at = now()
        FROM overdue WHERE p.pay_id = overdue.pay_id
        RETURNING {qualified("p")}
        """,
        limit,
    )
    return [_row(r) for r in records]


async def note_submitted(pool: Pool, pay_id: str, bank_txn_id: str | None) -> bool:
    """The bank holds the order and still works on it: note that, and its transaction id.

    What ``payouts.settle`` decides for a PROCESSING report on a PROCESSING payout whose bank
    transaction id agrees, done in one statement without the settlement's balance locks: the
    usual answer to a submission moves no money. False when that is not the case (the payout
    settled meanwhile, or the ids disagree): the caller then takes the full path.
    """
    return pay_id in await note_submitted_many(pool, [(pay_id, bank_txn_id)])


async def note_submitted_many(pool: Pool, answers: Sequence[tuple[str, str | None]]) -> set[str]:
    """``note_submitted`` for many (pay_id, bank_txn_id) answers in one statement; the pay_ids
    it noted. Any other is settled meanwhile or has another bank id: the full path's work.

    The rows are locked in payId order first, as ``lock_payouts`` does, so this statement and
    a settlement locking some of the same payouts cannot deadlock.
    """
    if not answers:
        return set()
    records = await pool.fetch(
        """
        WITH answered AS (
            SELECT p.pay_id, u.bank_txn_id
            FROM payouts p
            JOIN unnest($1::text[], $2::text[]) AS u(pay_id, bank_txn_id) ON p.pay_id = u.pay_id
            WHERE p.state = 'PROCESSING'
            ORDER BY p.pay_id FOR UPDATE OF p
        )
        UPDATE payouts p SET submitted_at = coalesce(p.submitted_at, now()),
            bank_txn_id = coalesce(p.bank_txn_id, a.bank_txn_id), updated_at = now()
        FROM answered a
        WHERE p.pay_id = a.pay_id AND p.state = 'PROCESSING'
            AND (p.bank_txn_id IS NULL OR a.bank_txn_id IS NULL OR p.bank_txn_id = a.bank_txn_id)
        RETURNING p.pay_id
        """,
        [pay_id for pay_id, _ in answers],
        [txn_id for _, txn_id in answers],
    )
    return {record["pay_id"] for record in records}


# A few hundred late payouts already page someone; counting past that would walk them all.
PAST_DEADLINE_CAP = 10_000


async def sample_past_deadline(conn: Connection) -> None:
    """``fundhub_processing_past_deadline{kind="payout"}``, alerted or not, from the partial
    index ``payouts_to_poll`` (PROCESSING rows only)."""
    late = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM payouts"
        " WHERE state = 'PROCESSING' AND deadline_at < now() LIMIT $1) late",
        PAST_DEADLINE_CAP,
    )
    PAST_DEADLINE.labels("payout").set(late)
