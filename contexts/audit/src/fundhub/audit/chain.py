"""The hash chain that makes the audit log tamper-evident, and its verification (pure).

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical bytes
(its JSON with sorted keys, no whitespace). Entries are numbered without gaps. So an edited
entry no longer matches its hash, an inserted or deleted one breaks the numbering and the
next entry's link, and a deleted last entry falls short of the head (the last sequence number
and hash, kept apart). Archiving old months keeps the last archived hash, so the chain that
remains starts from it and stays verifiable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = bytes(32)


def canonical(entry_json: dict[str, Any]) -> bytes:
    return orjson.dumps(entry_json, option=orjson.OPT_SORT_KEYS)


def link(previous: bytes, body: bytes) -> bytes:
    return hashlib.sha256(previous + body).digest()


@dataclass(frozen=True)
class ChainRow:
    """An entry as stored: its number, canonical bytes, hash, and the columns queries use
    (which must agree with the bytes)."""

    seq: int
    body: bytes
    hash: bytes
    columns: dict[str, Any]


@dataclass(frozen=True)
class Problem:
    seq: int
    reason: str


@dataclass
class Verification:
    checked: int = 0
    problems: list[Problem] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


COLUMNS_IN_BODY = {"actor": "actor", "route": "route", "status": "status", "kind": "kind"}


def _columns_problem(row: ChainRow) -> str | None:
    try:
        document = orjson.loads(row.body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    for column, field in COLUMNS_IN_BODY.items():
        if column in row.columns and row.columns[column] != document.get(field):
            return f"column {column} differs from the hashed entry"
    return None


def verify(
    rows: Iterable[ChainRow],
    *,
    start_seq: int = 0,
    start_hash: bytes = GENESIS,
    head: tuple[int, bytes] | None = None,
) -> Verification:
    """Check ``rows`` (in sequence order) continue the chain from ``start_seq``/``start_hash``
    and, given the head, end where it says."""
    result = Verification(problems=[])
    problems = result.problems
    assert problems is not None
    expected_seq, previous = start_seq + 1, start_hash
    for row in rows:
        result.checked += 1
        if row.seq != expected_seq:
            reason = (
                f"entries {expected_seq}..{row.seq - 1} missing"
                if row.seq > expected_seq
                else f"entry {row.seq} out of order (expected {expected_seq})"
            )
            problems.append(Problem(row.seq, reason))
        if link(previous, row.body) != row.hash:
            problems.append(Problem(row.seq, "hash does not match the entry and its predecessor"))
        column_problem = _columns_problem(row)
        if column_problem:
            problems.append(Problem(row.seq, column_problem))
        expected_seq, previous = row.seq + 1, row.hash
    if head is not None:
        head_seq, head_hash = head
        if head_seq != expected_seq - 1 or (head_seq > start_seq and head_hash != previous):
            problems.append(
                Problem(head_seq, f"chain ends at {expected_seq - 1}, the head says {head_seq}")
            )
    return result
