"""The merchants tables' SQL, inside the caller's transaction: rows locked and written, a
merchant's view read, the depository requests queued, claimed and finished.

One lock order everywhere (no deadlocks): a request row, then the merchant, then its binding.
The API locks the merchant first and only inserts requests; the worker locks the request it
settles, then the merchant, then the binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fundhub.common import outbox
from fundhub.common.db import Connection, Row, write_together
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.topics import Topics
from fundhub.merchants.states import Binding, Merchant, RequestKind, ResultStatus, VersionChange
from fundhub.merchants.wire import MerchantView

# Read of a merchant's history: the newest few (the version in force and the account in use
# always too); everything stays stored.
VERSIONS_SHOWN = 50
ACCOUNTS_SHOWN = 10
TYPE_REQUEST = "merchant.depository-request"

_MERCHANT = (
    "merchant_id, owner_key_id, merchant_no, state, account_id, currency, created_at, "
    "updated_at, fingerprint, notify_url, approved_version, latest_version, version_pending, "
    "member_no, reason, settlement_binding"
)
_BINDING = (
    "binding_id, merchant_id, account_no, account_name, bank_name, fingerprint, state, "
    "failed_attempts, reason, created_at, updated_at, verified_at"
)
REQUEST_COLUMNS = (
    "request_id, merchant_id, kind, version, binding_id, amount, state, outcome, reason, "
    "bank_app_id, poll_attempts, next_poll_at, created_at, sent_at, finished_at"
)


def to_merchant(row: Row) -> Merchant:
    return Merchant(
        merchant_id=row["merchant_id"],
        state=row["state"],
        approved_version=row["approved_version"],
        latest_version=row["latest_version"],
        version_pending=row["version_pending"],
        binding_in_use=row["settlement_binding"],
        reason=row["reason"],
        member_no=row["member_no"],
    )


def to_binding(row: Row) -> Binding:
    return Binding(row["binding_id"], row["state"], row["failed_attempts"], row["reason"])


# --- merchants ----------------------------------------------------------------------------------


async def insert_merchant(
    conn: Connection,
    merchant_id: str,
    owner_key_id: str,
    merchant_no: str,
    account_id: str,
    fingerprint: str,
    notify_url: str | None,
) -> bool:
    """A new merchant, PENDING_REVIEW on version 1; False when the owner's merchantNo exists.

    ``ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same merchantNo to commit
    (or roll back), so concurrent copies of one registration all end up reading one merchant.
    """
    inserted = await conn.fetchval(
        "INSERT INTO merchants (merchant_id, owner_key_id, merchant_no, state, account_id,"
        " currency, fingerprint, notify_url, latest_version, version_pending)"
        " VALUES ($1, $2, $3, 'PENDING_REVIEW', $4, 'CNY', $5, $6, 1, true)"
        " ON CONFLICT (owner_key_id, merchant_no) DO NOTHING RETURNING true",
        merchant_id,
        owner_key_id,
        merchant_no,
        account_id,
        fingerprint,
        notify_url,
    )
    return bool(inserted)


async def owned(conn: Connection, owner_key_id: str, merchant_id: str) -> Row | None:
    row: Row | None = await conn.fetchrow(
        f"SELECT {_MERCHANT} FROM merchants WHERE merchant_id = $1 AND owner_key_id = $2",
        merchant_id,
        owner_key_id,
    )
    return row


async def by_merchant_no(conn: Connection, owner_key_id: str, merchant_no: str) -> Row | None:
    row: Row | None = await conn.fetchrow(
        f"SELECT {_MERCHANT} FROM merchants WHERE owner_key_id = $1 AND merchant_no = $2",
        owner_key_id,
        merchant_no,
    )
    return row


async def lock_merchant(
    conn: Connection, merchant_id: str, owner_key_id: str | None = None
) -> Row | None:
    """The merchant's row, locked; None when missing or (given an owner) another tenant's."""
    row: Row | None = await conn.fetchrow(
        f"SELECT {_MERCHANT} FROM merchants WHERE merchant_id = $1"
        " AND ($2::text IS NULL OR owner_key_id = $2) FOR UPDATE",
        merchant_id,
        owner_key_id,
    )
    return row


async def write_merchant(conn: Connection, merchant: Merchant) -> None:
    await conn.execute(
        "UPDATE merchants SET state = $2, approved_version = $3, latest_version = $4,"
        " version_pending = $5, settlement_binding = $6, reason = $7, member_no = $8,"
        " updated_at = now() WHERE merchant_id = $1",
        merchant.merchant_id,
        merchant.state.value,
        merchant.approved_version,
        merchant.latest_version,
        merchant.version_pending,
        merchant.binding_in_use,
        merchant.reason,
        merchant.member_no,
    )


async def buckets_of(conn: Connection, account_id: str) -> tuple[int, int, int]:
    """The account's (available, frozen, pending), held against a concurrent posting until the
    caller's transaction ends; a merchant's account without a balance row holds nothing."""
    row = await conn.fetchrow(
        "SELECT available, frozen, pending FROM account_balances WHERE account_id = $1 FOR SHARE",
        account_id,
    )
    if row is None:
        return (0, 0, 0)
    return (row["available"], row["frozen"], row["pending"])


# --- versions -----------------------------------------------------------------------------------


async def insert_version(
    conn: Connection, merchant_id: str, version: int, materials: dict[str, Any], fingerprint: str
) -> None:
    await conn.execute(
        "INSERT INTO merchant_versions (merchant_id, version, state, materials, fingerprint)"
        " VALUES ($1, $2, 'PENDING_REVIEW', $3, $4)",
        merchant_id,
        version,
        materials,
        fingerprint,
    )


async def version_fingerprints(conn: Connection, merchant_id: str) -> dict[int, str]:
    rows = await conn.fetch(
        "SELECT version, fingerprint FROM merchant_versions WHERE merchant_id = $1", merchant_id
    )
    return {r["version"]: r["fingerprint"] for r in rows}


async def write_version(conn: Connection, merchant_id: str, change: VersionChange) -> None:
    await conn.execute(
        "UPDATE merchant_versions SET state = $3, reason = $4, reviewed_at = now()"
        " WHERE merchant_id = $1 AND version = $2",
        merchant_id,
        change.version,
        change.state.value,
        change.reason,
    )


async def version_materials(conn: Connection, merchant_id: str, version: int) -> dict[str, Any]:
    materials: dict[str, Any] = await conn.fetchval(
        "SELECT materials FROM merchant_versions WHERE merchant_id = $1 AND version = $2",
        merchant_id,
        version,
    )
    return materials


# --- settlement accounts ------------------------------------------------------------------------


async def latest_binding(conn: Connection, merchant_id: str, lock: bool = False) -> Row | None:
    """The merchant's newest binding (ids are time-ordered), locked when asked."""
    row: Row | None = await conn.fetchrow(
        f"SELECT {_BINDING} FROM merchant_settlement_accounts WHERE merchant_id = $1"
        f" ORDER BY binding_id DESC LIMIT 1{' FOR UPDATE' if lock else ''}",
        merchant_id,
    )
    return row


async def binding(conn: Connection, binding_id: str, lock: bool = False) -> Row | None:
    row: Row | None = await conn.fetchrow(
        f"SELECT {_BINDING} FROM merchant_settlement_accounts WHERE binding_id = $1"
        f"{' FOR UPDATE' if lock else ''}",
        binding_id,
    )
    return row


async def insert_binding(
    conn: Connection,
    binding_id: str,
    merchant_id: str,
    account_no: str,
    account_name: str,
    bank_name: str,
    fingerprint: str,
) -> None:
    await conn.execute(
        "INSERT INTO merchant_settlement_accounts (binding_id, merchant_id, account_no,"
        " account_name, bank_name, fingerprint, state)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'VERIFYING')",
        binding_id,
        merchant_id,
        account_no,
        account_name,
        bank_name,
        fingerprint,
    )


async def write_binding(conn: Connection, change: Binding) -> None:
    await conn.execute(
        "UPDATE merchant_settlement_accounts SET state = $2, failed_attempts = $3, reason = $4,"
        " verified_at = CASE WHEN $2 = 'VERIFIED' THEN now() ELSE verified_at END,"
        " updated_at = now() WHERE binding_id = $1",
        change.binding_id,
        change.state.value,
        change.failed_attempts,
        change.reason,
    )


async def set_binding_state(conn: Connection, binding_id: str, state: str) -> None:
    await conn.execute(
        "UPDATE merchant_settlement_accounts SET state = $2, updated_at = now()"
        " WHERE binding_id = $1",
        binding_id,
        state,
    )


# --- depository requests ------------------------------------------------------------------------


async def queue_request(
    conn: Connection,
    topics: Topics,
    request_id: str,
    merchant_id: str,
    kind: RequestKind,
    correlation_id: str,
    first_poll_s: float,
    *,
    version: int | None = None,
    binding_id: str | None = None,
    amount: int | None = None,
) -> None:
    """The request and its command to payment-worker (an outbox row, keyed by the merchant so a
    merchant's requests go in order), in the caller's transaction. The poller looks at it after
    ``first_poll_s`` if nothing else has by then."""
    await conn.execute(
        "INSERT INTO merchant_requests (request_id, merchant_id, kind, version, binding_id,"
        " amount, next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        request_id,
        merchant_id,
        kind.value,
        version,
        binding_id,
        amount,
        float(first_poll_s),
    )
    command = Envelope(
        id=deterministic_id("merchant-request", request_id),
        type=TYPE_REQUEST,
        correlation_id=correlation_id,
        data={"requestId": request_id, "merchantId": merchant_id},
    )
    await write_events(conn, [(topics.merchant_commands, merchant_id, command)])


async def write_events(conn: Connection, events: list[tuple[str, str | None, Envelope]]) -> None:
    """Outbox rows, waking payment-worker's relay (it relays merchants' events too) once
    committed."""
    if events:
        await write_together(conn, outbox.outbox_writes(events), notify=outbox.PAYOUTS_CHANNEL)


async def lock_request(conn: Connection, request_id: str) -> Row | None:
    row: Row | None = await conn.fetchrow(
        f"SELECT {REQUEST_COLUMNS} FROM merchant_requests WHERE request_id = $1 FOR UPDATE",
        request_id,
    )
    return row


async def lock_requests(conn: Connection, request_ids: Sequence[str]) -> list[Row]:
    """Locked in id order (no deadlocks between batches)."""
    rows: list[Row] = []
    rows += await conn.fetch(
        f"SELECT {REQUEST_COLUMNS} FROM merchant_requests WHERE request_id = ANY($1::text[])"
        " ORDER BY request_id FOR UPDATE",
        sorted(set(request_ids)),
    )
    return rows


async def note_app(conn: Connection, request_ids: Sequence[str], bank_app_id: str) -> None:
    """The bank app the requests go through (kept once set): only its results count."""
    await conn.execute(
        "UPDATE merchant_requests SET bank_app_id = coalesce(bank_app_id, $2)"
        " WHERE request_id = ANY($1::text[])",
        list(request_ids),
        bank_app_id,
    )


async def mark_sent(conn: Connection, request_id: str) -> None:
    """The bank holds the request and works on it (a result will follow)."""
    await conn.execute(
        "UPDATE merchant_requests SET state = 'SENT', sent_at = coalesce(sent_at, now())"
        " WHERE request_id = $1 AND state = 'QUEUED'",
        request_id,
    )


async def finish_request(
    conn: Connection, request_id: str, status: ResultStatus, reason: str | None
) -> None:
    await conn.execute(
        "UPDATE merchant_requests SET state = 'DONE', outcome = $2, reason = $3,"
        " finished_at = now() WHERE request_id = $1",
        request_id,
        status.value,
        reason,
    )


async def bind_request_of(conn: Connection, binding_id: str) -> str | None:
    """The BIND request a binding's micro-deposit was sent under (the bank knows it so)."""
    value: str | None = await conn.fetchval(
        "SELECT request_id FROM merchant_requests WHERE binding_id = $1 AND kind = 'BIND'"
        " ORDER BY request_id LIMIT 1",
        binding_id,
    )
    return value


async def claim_due(
    conn: Connection, limit: int, base_s: float, max_s: float, bank_app_id: str
) -> list[Row]:
    """Unfinished requests due a look, their next look pushed back (exponential backoff) and
    committed by the caller before it calls the bank; SKIP LOCKED shares them among workers."""
    rows: list[Row] = []
    rows += await conn.fetch(
        f"""
        WITH due AS (
            SELECT request_id FROM merchant_requests
            WHERE state <> 'DONE' AND next_poll_at <= now()
            ORDER BY next_poll_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE merchant_requests r SET poll_attempts = r.poll_attempts + 1,
            next_poll_at = now() + make_interval(
                secs => least($3::float8, $2::float8 * power(2, least(r.poll_attempts, 30)))),
            bank_app_id = coalesce(r.bank_app_id, $4)
        FROM due WHERE r.request_id = due.request_id
        RETURNING {", ".join(f"r.{c.strip()}" for c in REQUEST_COLUMNS.split(","))}
        """,
        limit,
        base_s,
        max_s,
        bank_app_id,
    )
    return rows


# --- a merchant as shown -----------------------------------------------------------------------


async def view(conn: Connection, merchant_row: Row) -> MerchantView:
    """The merchant with its newest versions and accounts (see ``wire.merchant_body``)."""
    merchant_id = merchant_row["merchant_id"]
    versions = await conn.fetch(
        "SELECT version, state, materials, reason, created_at, reviewed_at"
        " FROM merchant_versions WHERE merchant_id = $1"
        " AND (version > $2::int - $3::int OR version = $4::int) ORDER BY version DESC",
        merchant_id,
        merchant_row["latest_version"],
        VERSIONS_SHOWN,
        merchant_row["approved_version"],
    )
    bindings = await conn.fetch(
        f"(SELECT {_BINDING} FROM merchant_settlement_accounts WHERE merchant_id = $1"
        f" ORDER BY binding_id DESC LIMIT $2)"
        f" UNION SELECT {_BINDING} FROM merchant_settlement_accounts WHERE binding_id = $3"
        " ORDER BY binding_id DESC",
        merchant_id,
        ACCOUNTS_SHOWN,
        merchant_row["settlement_binding"],
    )
    return MerchantView(merchant_row, versions, bindings, merchant_row["latest_version"])


async def fresh_view(conn: Connection, merchant_id: str) -> MerchantView:
    """The view as the caller's transaction now sees it (after its own writes)."""
    row = await conn.fetchrow(
        f"SELECT {_MERCHANT} FROM merchants WHERE merchant_id = $1", merchant_id
    )
    assert row is not None
    return await view(conn, row)
