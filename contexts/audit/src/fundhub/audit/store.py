"""The audit log in PostgreSQL: appending to the chain, reading it back by key and time, and
verifying it. Appends take the chain's head row lock, so every writer (the audit-writer's
consumers, an operator's command) extends one chain, one batch at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from fundhub.audit.chain import ChainRow, Problem, Verification, canonical, link, verify
from fundhub.audit.entry import AuditEntry
from fundhub.common.db import Connection

_INSERT = """
INSERT INTO audit_log
    (seq, logged_at, at, kind, actor, route, status, correlation_id, body, hash)
SELECT s, $2, a, k, ac, r, st, c, b, h
FROM unnest($1::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
            $7::integer[], $8::text[], $9::bytea[], $10::bytea[])
     AS t(s, a, k, ac, r, st, c, b, h)
"""


def month_of(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


async def append(
    conn: Connection, entries: Sequence[AuditEntry], logged_at: datetime | None = None
) -> int:
    """Add ``entries`` to the chain inside the caller's transaction; the last sequence number.

    ``logged_at`` is the database's clock, read once the head is locked (so months follow the
    sequence); given only to place entries in a past month (tests, imports)."""
    if not entries:
        return -1
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
    assert head is not None, "migration 0009 inserts the head"
    if logged_at is None:
        logged_at = await conn.fetchval("SELECT clock_timestamp()")
    assert logged_at is not None
    await conn.execute("SELECT audit_ensure_partition($1)", month_of(logged_at.astimezone(UTC)))
    seq, previous = int(head["seq"]), bytes(head["hash"])
    seqs, bodies, hashes = [], [], []
    for entry in entries:
        seq += 1
        body = canonical(entry.to_json())
        previous = link(previous, body)
        seqs.append(seq)
        bodies.append(body)
        hashes.append(previous)
    await conn.execute(
        _INSERT,
        seqs,
        logged_at,
        [e.at for e in entries],
        [e.kind for e in entries],
        [e.actor for e in entries],
        [e.route for e in entries],
        [e.status for e in entries],
        [e.correlation_id for e in entries],
        bodies,
        hashes,
    )
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", seq, previous)
    return seq


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    next_cursor: int | None


async def query(
    conn: Connection,
    *,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    before_seq: int | None = None,
    limit: int = 100,
) -> Page:
    """Entries of one key (or operator, or all when None) between two times, newest first;
    ``before_seq`` is the cursor of the next page."""
    rows = await conn.fetch(
        "SELECT seq, body FROM audit_log"
        " WHERE ($1::text IS NULL OR actor = $1)"
        " AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)"
        " AND ($4::bigint IS NULL OR seq < $4)"
        " ORDER BY seq DESC LIMIT $5",
        actor,
        since,
        until,
        before_seq,
        limit + 1,
    )
    entries = [{"seq": r["seq"], **orjson.loads(r["body"])} for r in rows[:limit]]
    next_cursor = int(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return Page(entries, next_cursor)


async def _rows(conn: Connection, after_seq: int) -> AsyncIterator[ChainRow]:
    async for r in conn.cursor(
        "SELECT seq, body, hash, actor, route, status, kind FROM audit_log"
        " WHERE seq > $1 ORDER BY seq",
        after_seq,
        prefetch=1000,
    ):
        yield ChainRow(
            int(r["seq"]),
            bytes(r["body"]),
            bytes(r["hash"]),
            {"actor": r["actor"], "route": r["route"], "status": r["status"], "kind": r["kind"]},
        )


async def verify_chain(conn: Connection) -> Verification:
    """The whole chain in the database, from the last archived entry to the head, checked in
    one snapshot (a writer appending meanwhile changes nothing seen)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        start = await conn.fetchrow(
            "SELECT last_seq, last_hash FROM audit_archives WHERE last_seq IS NOT NULL"
            " ORDER BY last_seq DESC LIMIT 1"
        )
        start_seq = int(start["last_seq"]) if start else 0
        start_hash = bytes(start["last_hash"]) if start else bytes(32)
        head = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1")
        assert head is not None
        rows = [row async for row in _rows(conn, start_seq)]
        behind = await conn.fetchval("SELECT count(*) FROM audit_log WHERE seq <= $1", start_seq)
    result = verify(
        rows,
        start_seq=start_seq,
        start_hash=start_hash,
        head=(int(head["seq"]), bytes(head["hash"])),
    )
    if behind:
        assert result.problems is not None
        result.problems.append(
            Problem(start_seq, f"{behind} entries at or before the archived boundary remain")
        )
    return result
