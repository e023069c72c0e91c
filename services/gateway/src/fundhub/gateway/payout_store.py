"""The payouts API's SQL: idempotent acceptance (nonce, request, payout and command in one
statement), the reads, and the client-callback deliveries.

Acceptance relies on the ``payout_requests`` primary key (key_id, request_id): concurrent copies
of one request all try to insert it; the first commits, the others wait for that commit inside
``ON CONFLICT DO NOTHING`` and then read the committed payout (READ COMMITTED gives every
statement a fresh snapshot), so all of them answer with the same payId.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg

from fundhub.common.clock import iso_utc_ms, utcnow
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.outbox import PAYOUTS_CHANNEL
from fundhub.common.payout_request import PayoutRequest, new_pay_id
from fundhub.common.topics import Topics

TYPE_PAYOUT_REQUESTED = "payout.requested"
FIRST_POLL_AFTER_S = 5.0

PAYOUT_COLUMNS = (
    "pay_id, key_id, request_id, supplier_id, payer_account_id, amount, currency, state, "
    "error_code, message, bank_txn_id, extension, callback_url, created_at, finished_at"
)

# One statement, so one round trip and atomic without a transaction block: the caller's nonce,
# the request, the payout and its command for payment-worker, and the wake-up of the relay
# that publishes the command. A used nonce stops everything after it; a known requestId stops
# the payout and its command (the caller then reads what that request created).
_ACCEPT = f"""
WITH nonce AS (
    INSERT INTO api_nonces (key_id, nonce) VALUES ($1, $15)
    ON CONFLICT DO NOTHING
    RETURNING key_id
), accepted AS (
    INSERT INTO payout_requests (key_id, request_id, fingerprint, pay_id)
    SELECT $1, $2, $3, $4 FROM nonce
    ON CONFLICT DO NOTHING
    RETURNING pay_id
), payout AS (
    INSERT INTO payouts (
        pay_id, key_id, request_id, supplier_id, payer_account_id, amount, currency, payee,
        purpose, callback_url, extension, state, deadline_at, next_poll_at
    )
    SELECT accepted.pay_id, $1, $2, $5, $6, $7, $8, $9::jsonb, $10, $11, $12::jsonb,
           'PROCESSING', now() + make_interval(secs => $13), now() + make_interval(secs => $14)
    FROM accepted
    RETURNING {PAYOUT_COLUMNS}
), command AS (
    INSERT INTO outbox (topic, key, payload, headers)
    SELECT $16, payout.payer_account_id, $17, $18::jsonb FROM payout
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM nonce) AS nonce_fresh,
       (SELECT count(*) FROM command, pg_notify('{PAYOUTS_CHANNEL}', '')) AS queued,
       payout.*
FROM (SELECT 1) AS one LEFT JOIN payout ON true
"""

_EXISTING = f"""
SELECT r.fingerprint, {", ".join("p." + c.strip() for c in PAYOUT_COLUMNS.split(","))}
FROM payout_requests r JOIN payouts p ON p.pay_id = r.pay_id
WHERE r.key_id = $1 AND r.request_id = $2
"""


@dataclass(frozen=True)
class Admission:
    """The payout a request resolves to; ``created`` is False when the requestId was known."""

    row: asyncpg.Record
    created: bool


class NonceUsed(Exception):
    """The request's nonce was seen before: a replay, refused before anything was written."""


class PayIdSequence:
    """Sequence numbers for payIds, reserved from Postgres a block at a time.

    One round trip per ``block`` payouts instead of one each. A stop forgets the unused rest of
    a block: payIds are unique and increase per gateway, but have gaps and interleave between
    replicas, which nothing relies on.
    """

    def __init__(self, pool: asyncpg.Pool, block: int = 100) -> None:
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
    def __init__(self, pool: asyncpg.Pool, topics: Topics, deadline_s: float) -> None:
        self._pool = pool
        self._topics = topics
        self._deadline_s = float(deadline_s)
        self._sequence = PayIdSequence(pool)

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
        row = await self._pool.fetchrow(
            _ACCEPT,
            key_id,
            request.request_id,
            fingerprint,
            pay_id,
            request.supplier_id,
            request.payer_account_id,
            request.amount,
            request.currency,
            request.payee.model_dump(mode="json", by_alias=True),
            request.purpose,
            request.callback_url,
            request.extension,
            self._deadline_s,
            FIRST_POLL_AFTER_S,
            nonce,
            self._topics.payout_commands,
            command.to_bytes(),
            {k: v.decode() for k, v in command.headers()},
        )
        assert row is not None  # the final SELECT always yields one row
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
            f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE pay_id = $1", pay_id
        )
        return row

    async def by_request_id(self, key_id: str, request_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(
            f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE key_id = $1 AND request_id = $2",
            key_id,
            request_id,
        )
        return row

    async def callbacks(self, pay_id: str) -> list[dict[str, Any]]:
        """The payout's callback deliveries, oldest first, each with its attempts in order."""
        async with self._pool.acquire() as conn:
            deliveries = await conn.fetch(
                "SELECT delivery_id, state, url, status, attempts, next_attempt_at, "
                "delivered_at, created_at FROM callback_deliveries "
                "WHERE pay_id = $1 ORDER BY delivery_id",
                pay_id,
            )
            attempts = await conn.fetch(
                "SELECT delivery_id, attempted_at, status_code, error, duration_ms "
                "FROM callback_attempts WHERE delivery_id = ANY($1::bigint[]) "
                "ORDER BY attempt_id",
                [d["delivery_id"] for d in deliveries],
            )
        by_delivery: dict[int, list[dict[str, Any]]] = {}
        for a in attempts:
            by_delivery.setdefault(a["delivery_id"], []).append(
                {
                    "at": iso_utc_ms(a["attempted_at"]),
                    "statusCode": a["status_code"],
                    "error": a["error"],
                    "durationMs": a["duration_ms"],
                }
            )
        return [
            {
                "state": d["state"],
                "url": d["url"],
                "status": d["status"],
                "attemptCount": d["attempts"],
                "nextAttemptAt": iso_utc_ms(d["next_attempt_at"])
                if d["status"] == "PENDING"
                else None,
                "deliveredAt": iso_utc_ms(d["delivered_at"]) if d["delivered_at"] else None,
                "createdAt": iso_utc_ms(d["created_at"]),
                "attempts": by_delivery.get(d["delivery_id"], []),
            }
            for d in deliveries
        ]

    async def replay_callbacks(self, pay_id: str) -> int:
        """Set the payout's deliveries back to PENDING, due now; the dispatcher sends them again."""
        result: str = await self._pool.execute(
            "UPDATE callback_deliveries SET status = 'PENDING', next_attempt_at = now() "
            "WHERE pay_id = $1",
            pay_id,
        )
        return int(result.split()[-1])
