"""Merchants that traded before the depository (data initialisation), in bulk, in the caller's
transaction: written as the API writes a registration (the merchant PENDING_REVIEW on version 1,
its ledger account, a depository request), but the request is a REGISTER, an existing account
the bank takes at once; its answers are then settled a batch per statement.

The same rules as one request at a time (``changes.settle``): a request is decided once (a DONE
one is left alone, whoever finished it: the worker's poller takes up a REGISTER the importer
never got an answer for), ``states.on_result`` decides, and the rows are locked request first,
then merchant. Merchants brought in so have no ``notifyUrl``: their changes call nobody back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fundhub.common.db import ArrayStatement, BatchInsert, Connection, Row, write_together
from fundhub.ledger import store as ledger_store
from fundhub.merchants import states, store
from fundhub.merchants.depository import DepositoryAnswer
from fundhub.merchants.ids import account_id_of
from fundhub.merchants.materials import Registration
from fundhub.merchants.states import RequestKind

CURRENCY = "CNY"


@dataclass(frozen=True, slots=True)
class Existing:
    """One merchant to bring in: its new ids, its registration (the file's row) and its
    version 1 (normalised, as stored and as sent to the bank, and its fingerprint)."""

    merchant_id: str
    request_id: str
    registration: Registration
    materials: dict[str, Any]
    materials_fingerprint: str

    @classmethod
    def of(cls, merchant_id: str, request_id: str, registration: Registration) -> Existing:
        materials = registration.materials()
        return cls(
            merchant_id, request_id, registration, materials.normalised(), materials.fingerprint()
        )

    @property
    def account_id(self) -> str:
        return account_id_of(self.merchant_id)


async def held(conn: Connection, owner_key_id: str, merchant_nos: Sequence[str]) -> list[Row]:
    """The owner's merchants among ``merchant_nos``, with their unfinished REGISTER, if any."""
    rows: list[Row] = []
    rows += await conn.fetch(
        "SELECT m.merchant_id, m.merchant_no, m.fingerprint, m.state, m.account_id, m.currency,"
        " (SELECT r.request_id FROM merchant_requests r WHERE r.merchant_id = m.merchant_id"
        "  AND r.kind = 'REGISTER' AND r.state <> 'DONE' ORDER BY r.request_id LIMIT 1)"
        " AS register_request"
        " FROM merchants m WHERE m.owner_key_id = $1 AND m.merchant_no = ANY($2::text[])",
        owner_key_id,
        list(merchant_nos),
    )
    return rows


_INSERT_MERCHANTS = BatchInsert(
    "merchants",
    (
        ("merchant_id", "text"),
        ("owner_key_id", "text"),
        ("merchant_no", "text"),
        ("state", "text"),
        ("account_id", "text"),
        ("currency", "text"),
        ("fingerprint", "text"),
        ("latest_version", "integer"),
        ("version_pending", "boolean"),
    ),
)
_INSERT_VERSIONS = BatchInsert(
    "merchant_versions",
    (
        ("merchant_id", "text"),
        ("version", "integer"),
        ("state", "text"),
        ("materials", "jsonb"),
        ("fingerprint", "text"),
    ),
)
_INSERT_REQUESTS = BatchInsert(
    "merchant_requests",
    (
        ("request_id", "text"),
        ("merchant_id", "text"),
        ("kind", "text"),
        ("version", "integer"),
        ("bank_app_id", "text"),
        ("next_poll_at", "timestamptz"),
    ),
)


async def insert(
    conn: Connection, owner_key_id: str, merchants: Sequence[Existing], bank_app_id: str
) -> None:
    """The merchants, their version 1, their ledger accounts and their REGISTER requests. The
    poller looks at a request only after ``merchant_poll_base_s``-like delays, pushed here to
    an hour: the importer sends them now, and a rerun resends what it left unanswered."""
    if not merchants:
        return
    await ledger_store.ensure_accounts(
        conn,
        [(m.account_id, CURRENCY, f"merchant {m.registration.merchant_no}") for m in merchants],
        [],
    )
    next_poll = await conn.fetchval("SELECT now() + interval '1 hour'")
    version_rows = [
        (m.merchant_id, 1, "PENDING_REVIEW", m.materials, m.materials_fingerprint)
        for m in merchants
    ]
    await write_together(
        conn,
        [
            (
                _INSERT_MERCHANTS,
                [
                    (
                        m.merchant_id,
                        owner_key_id,
                        m.registration.merchant_no,
                        "PENDING_REVIEW",
                        m.account_id,
                        CURRENCY,
                        m.registration.fingerprint(),
                        1,
                        True,
                    )
                    for m in merchants
                ],
            ),
            (_INSERT_VERSIONS, version_rows),
            (
                _INSERT_REQUESTS,
                [
                    (
                        m.request_id,
                        m.merchant_id,
                        RequestKind.REGISTER.value,
                        1,
                        bank_app_id,
                        next_poll,
                    )
                    for m in merchants
                ],
            ),
        ],
    )


_UPDATE_MERCHANTS = ArrayStatement(
    "UPDATE merchants m SET state = u.state, approved_version = u.approved,"
    " version_pending = u.pending, member_no = u.member_no, reason = u.reason, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::integer[], $4::boolean[], $5::text[], $6::text[])"
    " AS u(id, state, approved, pending, member_no, reason) WHERE m.merchant_id = u.id",
    ("text", "text", "integer", "boolean", "text", "text"),
)
_UPDATE_VERSIONS = ArrayStatement(
    "UPDATE merchant_versions v SET state = u.state, reason = u.reason, reviewed_at = now()"
    " FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[])"
    " AS u(id, version, state, reason) WHERE v.merchant_id = u.id AND v.version = u.version",
    ("text", "integer", "text", "text"),
)
_FINISH_REQUESTS = ArrayStatement(
    "UPDATE merchant_requests r SET state = 'DONE', outcome = u.outcome, reason = u.reason,"
    " finished_at = now() FROM unnest($1::text[], $2::text[], $3::text[])"
    " AS u(id, outcome, reason) WHERE r.request_id = u.id",
    ("text", "text", "text"),
)
_MARK_SENT = ArrayStatement(
    "UPDATE merchant_requests r SET state = 'SENT', sent_at = coalesce(sent_at, now())"
    " FROM unnest($1::text[]) AS u(id) WHERE r.request_id = u.id AND r.state = 'QUEUED'",
    ("text",),
)


async def settle_answers(conn: Connection, answers: Sequence[DepositoryAnswer]) -> Counter[str]:
    """The bank's answers to REGISTER requests, in one go: ``applied`` (ACTIVE or REJECTED),
    ``processing`` (the bank works on it: its notification or the poller finishes it),
    ``duplicate`` (already decided), ``stale`` (the merchant moved on meanwhile)."""
    tally: Counter[str] = Counter()
    if not answers:
        return tally
    by_id = {a.request_id: a for a in answers}
    requests = await store.lock_requests(conn, list(by_id))
    open_requests = [r for r in requests if r["state"] != "DONE"]
    tally["duplicate"] += len(requests) - len(open_requests)
    merchants = {
        r["merchant_id"]: r
        for r in await conn.fetch(
            "SELECT merchant_id, state, approved_version, latest_version, version_pending,"
            " settlement_binding, reason, member_no FROM merchants"
            " WHERE merchant_id = ANY($1::text[]) ORDER BY merchant_id FOR UPDATE",
            sorted({r["merchant_id"] for r in open_requests}),
        )
    }
    merchant_rows: list[tuple[object, ...]] = []
    version_rows: list[tuple[object, ...]] = []
    finished: list[tuple[object, ...]] = []
    sent: list[tuple[object, ...]] = []
    for request in open_requests:
        answer = by_id[request["request_id"]]
        if not answer.final:
            sent.append((answer.request_id,))
            tally["processing"] += 1
            continue
        change = states.on_result(
            RequestKind(request["kind"]),
            answer.request_id,
            store.to_merchant(merchants[request["merchant_id"]]),
            request["version"],
            None,
            answer.status,
            answer.reason,
            answer.member_no,
        )
        finished.append((answer.request_id, answer.status.value, answer.reason))
        if change.stale:
            tally["stale"] += 1
            continue
        tally["applied"] += 1
        if change.merchant is not None:
            m = change.merchant
            merchant_rows.append(
                (m.merchant_id, m.state.value, m.approved_version, m.version_pending,
                 m.member_no, m.reason)
            )  # fmt: skip
        if change.version is not None:
            v = change.version
            version_rows.append((request["merchant_id"], v.version, v.state.value, v.reason))
    await write_together(
        conn,
        [
            (_FINISH_REQUESTS, finished),
            (_MARK_SENT, sent),
            (_UPDATE_MERCHANTS, merchant_rows),
            (_UPDATE_VERSIONS, version_rows),
        ],
    )
    return tally
