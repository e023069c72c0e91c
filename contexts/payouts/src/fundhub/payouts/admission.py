"""The payouts API's SQL: idempotent acceptance (nonce, request, payout and command in one
statement), the reads, and the client-callback deliveries.

Acceptance relies on the ``payout_requests`` primary key (key_id, request_id): concurrent copies
of one request all try to insert it; the first commits, the others wait for that commit inside
``ON CONFLICT DO NOTHING`` and then read the committed payout (READ COMMITTED gives every
statement a fresh snapshot), so all of them answer with the same payId. Copies that land in one
batch (``GroupCommit``) resolve the same way: the first in the batch inserts, the others read it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from fundhub.common import db, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Pool
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.group_commit import GroupCommit
from fundhub.common.topics import Topics
from fundhub.payouts.metrics import PAYOUT_ADMIT_BATCH
from fundhub.payouts.request import PayoutRequest, new_pay_id
from fundhub.payouts.store import WIRE_COLUMNS, qualified

TYPE_PAYOUT_REQUESTED = "payout.requested"


# One statement for a batch of requests (see group_commit), so one round trip and atomic without
# a transaction block: per request its nonce, the request, the payout, the command for
# payment-worker; and the wake-up of the relay that publishes the commands. A used nonce stops
# everything after it; a known requestId stops the payout and its command (the caller then reads
# what that request created). One row per request comes back, in the order given.
_ACCEPT_MANY = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::text[], $14::bytea[], $15::text[])
        WITH ORDINALITY AS i(key_id, nonce, request_id, fingerprint, pay_id, supplier_id,
                             payer_account_id, amount, currency, payee, purpose, callback_url,
                             extension, command, command_headers, n)
), nonce AS (
    INSERT INTO api_nonces (key_id, nonce)
    SELECT key_id, nonce FROM input ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING key_id, nonce
), accepted AS (
    INSERT INTO payout_requests (key_id, request_id, fingerprint, pay_id)
    SELECT i.key_id, i.request_id, i.fingerprint, i.pay_id
    FROM input i JOIN nonce ON nonce.key_id = i.key_id AND nonce.nonce = i.nonce
    ORDER BY i.n
    ON CONFLICT DO NOTHING
    RETURNING pay_id
), payout AS (
    INSERT INTO payouts (
        pay_id, key_id, request_id, supplier_id, payer_account_id, amount, currency, payee,
        purpose, callback_url, extension, state, deadline_at, next_poll_at
    )
    SELECT i.pay_id, i.key_id, i.request_id, i.supplier_id, i.payer_account_id, i.amount,
           i.currency, i.payee::jsonb, i.purpose, i.callback_url, i.extension::jsonb,
           'PROCESSING', now() + make_interval(secs => $16), now() + make_interval(secs => $17)
    FROM input i JOIN accepted ON accepted.pay_id = i.pay_id
    ORDER BY i.n
    RETURNING {WIRE_COLUMNS}
), command AS (
    {
    outbox.insert_from('''
    SELECT $18, i.payer_account_id, i.command, i.command_headers::jsonb
    FROM input i JOIN payout ON payout.pay_id = i.pay_id
    ORDER BY i.n''')
}
    RETURNING id
), woken AS (
    SELECT count(*) AS queued FROM command, {outbox.wake_up(outbox.PAYOUTS_CHANNEL)}
)
SELECT (nonce.nonce IS NOT NULL) AS nonce_fresh, woken.queued, payout.*
FROM input i
    CROSS JOIN woken
    LEFT JOIN nonce ON nonce.key_id = i.key_id AND nonce.nonce = i.nonce
    LEFT JOIN payout ON payout.pay_id = i.pay_id
ORDER BY i.n
"""

_EXISTING = f"""
SELECT r.fingerprint, {qualified("p", WIRE_COLUMNS)}
FROM payout_requests r JOIN payouts p ON p.pay_id = r.pay_id
WHERE r.key_id = $1 AND r.request_id = $2
"""


@dataclass(frozen=True)
class Admission:
    """The payout a request resolves to; ``created`` is False when the requestId was known."""

    row: asyncpg.Record
    created: bool


class _Accept(NamedTuple):
    """One request's columns of ``_ACCEPT_MANY``, in its parameters' order (JSON as text)."""

    key_id: str
    nonce: str
    request_id: str
    fingerprint: str
    pay_id: str
    supplier_id: str
    payer_account_id: str
    amount: int
    currency: str
    payee: str
    purpose: str | None
    callback_url: str | None
    extension: str | None
    command: bytes
    command_headers: str


class NonceUsed(Exception):
    """The request's nonce was seen before: a replay, refused before anything was written."""


class PayIdSequence:
    """Sequence numbers for payIds, reserved from Postgres a block at a time.

    One round trip per ``block`` payouts instead of one each. A stop forgets the unused rest of
    a block: payIds are unique and increase per gateway, but have gaps and interleave between
    replicas, which nothing relies on.
    """

    def __init__(self, pool: Pool, block: int = 100) -> None:
        self._pool = pool
        self._block = block
        self._free: deque[int] = deque()
        self._refill = asyncio.Lock()

    async def next(self) -> int:
        if not self._free:
            async with self._refill:
                if not self._free:
                    numbers = await self._pool.fetch(
                        "SELECT nextval('payout_seq') AS n FROM generate_series(1, $1)",
                        self._block,
                    )
                    self._free.extend(sorted(int(r["n"]) for r in numbers))
        return self._free.popleft()


class PayoutStore:
    def __init__(self, pool: Pool, topics: Topics, deadline_s: float, first_poll_s: float) -> None:
        """``deadline_s``: until the alert for a result still unknown; ``first_poll_s``: until
        the worker's poller first asks the bank (payout_poll_base_s, as its later backoff)."""
        self._pool = pool
        self._topics = topics
        self._deadline_s = float(deadline_s)
        self._first_poll_s = float(first_poll_s)
        self._sequence = PayIdSequence(pool)
        # Two requests under one nonce would both read as fresh in one statement.
        self._group: GroupCommit[_Accept, asyncpg.Record] = GroupCommit(
            self._accept_many, conflict_key=lambda a: (a.key_id, a.nonce)
        )

    async def _accept_many(self, batch: list[_Accept]) -> list[asyncpg.Record]:
        PAYOUT_ADMIT_BATCH.observe(len(batch))
        columns = [list(column) for column in zip(*batch, strict=True)]
        rows: list[asyncpg.Record] = await self._pool.fetch(
            _ACCEPT_MANY,
            *columns,
            self._deadline_s,
            self._first_poll_s,
            self._topics.payout_commands,
        )
        return rows

    async def admit(
        self, key_id: str, nonce: str, request: PayoutRequest, correlation_id: str
    ) -> Admission:
        """Accept a new payout, or resolve a repeated requestId to the payout it created.

        Records ``nonce`` in the same statement (raises NonceUsed when it was seen before).
        Raises E010 when the requestId was used before with another body.
        """
        fingerprint = request.fingerprint()
        pay_id = new_pay_id(utcnow().date(), await self._sequence.next())
        command = Envelope(
            id=deterministic_id("payout", pay_id),
            type=TYPE_PAYOUT_REQUESTED,
            correlation_id=correlation_id,
            data={"payId": pay_id},
        )
        row = await self._group.submit(
            _Accept(
                key_id,
                nonce,
                request.request_id,
                fingerprint,
                pay_id,
                request.supplier_id,
                request.payer_account_id,
                request.amount,
                request.currency,
                db.json_text(request.payee.model_dump(mode="json", by_alias=True)),
                request.purpose,
                request.callback_url,
                None if request.extension is None else db.json_text(request.extension),
                command.to_bytes(),
                db.json_text({k: v.decode() for k, v in command.headers()}),
            )
        )
        if not row["nonce_fresh"]:
            raise NonceUsed(nonce)
        if row["pay_id"] is not None:
            return Admission(row, created=True)
        existing = await self._pool.fetchrow(_EXISTING, key_id, request.request_id)
        if existing is None:  # the conflicting insert rolled back after all: a retry will do
            raise FundhubError(ErrorCode.UNAVAILABLE, "the request raced a failed one; retry")
        if existing["fingerprint"] != fingerprint:
            raise FundhubError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"requestId: {request.request_id} was used before with another body",
            )
        return Admission(existing, created=False)

    async def by_pay_id(self, pay_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(
            f"SELECT {WIRE_COLUMNS} FROM payouts WHERE pay_id = $1", pay_id
        )
        return row

    async def by_request_id(self, key_id: str, request_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(
            f"SELECT {WIRE_COLUMNS} FROM payouts WHERE key_id = $1 AND request_id = $2",
            key_id,
            request_id,
        )
        return row
