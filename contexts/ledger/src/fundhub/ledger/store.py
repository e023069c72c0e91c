"""The ledger in Postgres: accounts, locked balances and journal writes, inside a caller's tx.

The rules (what balances, what may go negative) live in ``ledger.py``; this module only stores
what those rules decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fundhub.common.db import (
    ArrayStatement,
    BatchInsert,
    Connection,
    Row,
    Step,
    Write,
    run_together,
)
from fundhub.ledger.rules import Balance, JournalEntry


async def ensure_accounts(
    conn: Connection,
    customers: Iterable[tuple[str, str, str | None]],
    system_ids: Iterable[str],
) -> None:
    """Create accounts on first sight, in one statement; existing ones are left alone."""
    await run_together(conn, ensure_and_lock_steps(customers, system_ids, lock=False))


async def ensure_system_accounts(conn: Connection, account_ids: Iterable[str]) -> set[str]:
    """Create system accounts on first sight; return those that already existed, committed.

    ``ON CONFLICT DO NOTHING`` skips a row only once the conflicting one is committed (it waits
    for a concurrent inserter), so a caller may cache the returned ids; the ones created here
    exist only if the caller's transaction commits.
    """
    wanted = sorted(set(account_ids))
    created = await conn.fetch(_ENSURE_SYSTEM + " RETURNING account_id", wanted)
    return set(wanted) - {r["account_id"] for r in created}


_ENSURE_SYSTEM = (
    "INSERT INTO accounts (account_id, kind, currency, allow_negative) "
    "SELECT a, 'system', split_part(a, ':', 3), true FROM unnest($1::text[]) AS t(a) "
    "ON CONFLICT (account_id) DO NOTHING"
)
_ENSURE_CUSTOMERS = (
    "INSERT INTO accounts (account_id, kind, currency, name) "
    "SELECT a, 'customer', c, n FROM unnest($1::text[], $2::text[], $3::text[]) AS t(a, c, n) "
    "ON CONFLICT (account_id) DO NOTHING"
)
_INSERT_BALANCES = (
    "INSERT INTO account_balances (account_id, currency) "
    "SELECT a, c FROM unnest($1::text[], $2::text[]) AS t(a, c) "
)
_ENSURE_BALANCES = _INSERT_BALANCES + "ON CONFLICT (account_id) DO NOTHING"
# The no-op update locks an existing row and returns it as it stands (a plain SELECT in the
# same statement could not see a row inserted by it, nor one a concurrent batch just created).
_ENSURE_AND_LOCK_BALANCES = _INSERT_BALANCES + (
    "ON CONFLICT (account_id) DO UPDATE SET version = account_balances.version "
    "RETURNING account_id, currency, available, frozen, pending, allow_negative"
)


def ensure_and_lock_steps(
    customers: Iterable[tuple[str, str, str | None]],
    system_ids: Iterable[str],
    lock: bool = True,
) -> list[Step]:
    """``ensure_accounts`` (and with ``lock`` the lock of the customers' balances) as steps
    of ``db.run_together``; with ``lock`` the last step's rows are the locked balances
    (``balances_from``). Rows are sorted, so concurrent batches lock in the same order.

    Customers are (account_id, currency, name) and get a balance row; system accounts
    (``sys:<purpose>:<currency>``) may go negative and keep none, so that no hot row
    serialises every consumer."""
    rows = sorted(set(customers))
    ids = [r[0] for r in rows]
    currencies = [r[1] for r in rows]
    return [
        Step(_ENSURE_SYSTEM, (sorted(set(system_ids)),), returns=False),
        Step(_ENSURE_CUSTOMERS, (ids, currencies, [r[2] for r in rows]), returns=False),
        Step(_ENSURE_AND_LOCK_BALANCES if lock else _ENSURE_BALANCES, (ids, currencies), lock),
    ]


def balances_from(rows: Iterable[Row]) -> dict[str, Balance]:
    return {
        r["account_id"]: Balance(
            account_id=r["account_id"],
            currency=r["currency"].strip(),
            available=r["available"],
            frozen=r["frozen"],
            pending=r["pending"],
            allow_negative=r["allow_negative"],
        )
        for r in rows
    }


async def lock_balances(conn: Connection, account_ids: Iterable[str]) -> dict[str, Balance]:
    """Lock in a fixed order so that concurrent batches cannot deadlock."""
    rows = await conn.fetch(
        "SELECT account_id, currency, available, frozen, pending, allow_negative "
        "FROM account_balances WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE",
        sorted(set(account_ids)),
    )
    return balances_from(rows)


_ENTRY_COLUMNS = (
    ("entry_id", "uuid"),
    ("kind", "text"),
    ("ref_type", "text"),
    ("ref_id", "text"),
    ("description", "text"),
    ("correlation_id", "text"),
)
_POSTING_COLUMNS = (
    ("entry_id", "uuid"),
    ("account_id", "text"),
    ("bucket", "text"),
    ("currency", "text"),
    ("amount", "bigint"),
)
_INSERT_ENTRIES = BatchInsert("journal_entries", _ENTRY_COLUMNS)
_INSERT_POSTINGS = BatchInsert("postings", _POSTING_COLUMNS)


def entry_writes(
    entries: Sequence[JournalEntry], correlation_ids: Sequence[str | None]
) -> list[Write]:
    """Journal entries and their postings, for ``db.write_together``."""
    return [
        (
            _INSERT_ENTRIES,
            [
                (e.entry_id, e.kind, e.ref_type, e.ref_id, e.description, cid)
                for e, cid in zip(entries, correlation_ids, strict=True)
            ],
        ),
        (
            _INSERT_POSTINGS,
            [
                (e.entry_id, p.account_id, p.bucket.value, p.currency, p.amount)
                for e in entries
                for p in e.postings
            ],
        ),
    ]


_UPDATE_BALANCES = ArrayStatement(
    "UPDATE account_balances b SET available = u.a, frozen = u.f, pending = u.p, "
    "version = b.version + 1, updated_at = now() "
    "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, a, f, p) "
    "WHERE b.account_id = u.id",
    ("text", "bigint", "bigint", "bigint"),
)


def balance_writes(balances: Iterable[Balance]) -> list[Write]:
    rows = [(b.account_id, b.available, b.frozen, b.pending) for b in balances]
    return [(_UPDATE_BALANCES, rows)]
