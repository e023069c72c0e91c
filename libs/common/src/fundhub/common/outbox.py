"""The transactional outbox: events are stored with their state and relayed to Kafka afterwards.

An event is written in the same transaction as the state it announces (invariant 3); the relay
publishes it with acks=all and only then marks it published, so a crash re-sends (consumers dedupe
by envelope id) but never loses or invents an event.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from fundhub.common.db import BatchInsert, Connection, Lent, Pool, Write
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage
from fundhub.common.listening import ChannelListener
from fundhub.common.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE

log = structlog.get_logger(__name__)

# Who is woken when rows are written. Any relay publishes any row (SKIP LOCKED shares the work,
# and an idle relay looks every half second anyway), but each write wakes only the relay of the
# service that follows it up, not every relay for every batch.
LEDGER_CHANNEL = "fundhub_outbox_ledger"  # notify-ingest's relay: ledger events
PAYOUTS_CHANNEL = "fundhub_outbox_payouts"  # payment-worker's relay: payout commands and events
_COLUMNS = (("topic", "text"), ("key", "text"), ("payload", "bytea"), ("headers", "jsonb"))
_INSERT_OUTBOX = BatchInsert("outbox", _COLUMNS)


def insert_from(select: str) -> str:
    """SQL inserting the rows of ``select`` (topic, key, payload, headers as jsonb) as events.

    For a statement that writes its state and its events itself, in one round trip (the payout
    acceptance); every other writer passes ``outbox_writes`` to ``db.write_together``.
    """
    return f"INSERT INTO outbox ({', '.join(name for name, _ in _COLUMNS)}) {select}"


def wake_up(channel: str) -> str:
    """SQL waking the relay that listens on ``channel`` once the statement commits."""
    return f"pg_notify('{channel}', '')"


def outbox_writes(events: list[tuple[str, str | None, Envelope]]) -> list[Write]:
    """Rows for ``db.write_together``; pass ``notify=`` a channel above to wake its relay."""
    return [
        (
            _INSERT_OUTBOX,
            [
                (topic, key, env.to_bytes(), {k: v.decode() for k, v in env.headers()})
                for topic, key, env in events
            ],
        )
    ]


_TAKE = (
    "UPDATE outbox SET published_at = now() WHERE id IN ("
    "  SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1"
    "  FOR UPDATE SKIP LOCKED) "
    "RETURNING id, topic, key, payload, headers"
)


class OutboxRelay:
    """Publishes committed outbox rows in id order; several replicas share work via SKIP LOCKED.

    Rows are marked published and sent in one transaction that commits only after Kafka
    acknowledged every one: a failed send rolls the mark back, a crash re-sends (consumers
    dedupe by envelope id)."""

    def __init__(
        self,
        pool: Pool,
        publisher: KafkaPublisher,
        channel: str,
        batch: int = 500,
        idle_s: float = 0.5,
        gather_s: float = 0.01,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._channel = channel
        self._batch = batch
        self._idle_s = idle_s
        self._gather_s = gather_s
        self._wake = asyncio.Event()
        self._conn: Lent | None = None  # held: no pool reset per pass

    async def relay_once(self) -> int:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        conn = self._conn
        try:
            return await self._relay(conn)
        except BaseException:
            self._conn = None
            await self._pool.release(conn)
            raise

    async def _relay(self, conn: Connection) -> int:
        async with conn.transaction():
            rows = sorted(await conn.fetch(_TAKE, self._batch), key=lambda r: r["id"])
            if not rows:
                return 0
            await self._publisher.send_many(
                [
                    OutgoingMessage(
                        r["topic"],
                        bytes(r["payload"]),
                        r["key"].encode() if r["key"] is not None else None,
                        [(k, str(v).encode()) for k, v in (r["headers"] or {}).items()],
                    )
                    for r in rows
                ]
            )
        return len(rows)

    async def run(self) -> None:
        listener = ChannelListener(self._pool, self._channel, self._wake.set)
        try:
            while True:
                self._wake.clear()  # before the pass: a commit during it wakes the next one
                try:
                    await listener.ensure()  # again after a server restart; the pass follows
                    sent = await self.relay_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("outbox_relay_failed", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                if sent >= self._batch:
                    continue  # more are waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_s)
                # Let a few more commits land: fewer, larger passes (one per writer batch
                # would cost more than the events themselves).
                await asyncio.sleep(self._gather_s)
        finally:
            await listener.close()
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    await self._pool.release(conn)


# A backlog past this is an incident whatever its size; counting further would walk it all.
OUTBOX_COUNT_CAP = 100_000
_BACKLOG = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT $1) b)"
    " AS waiting, (SELECT extract(epoch FROM now() - created_at) FROM outbox"
    "  WHERE published_at IS NULL ORDER BY id LIMIT 1) AS oldest_s"
)


async def sample_backlog(conn: Connection) -> None:
    """The unpublished rows and the oldest one's age, both from the partial index
    ``outbox_unpublished`` (it holds only the backlog, however long the history)."""
    row = await conn.fetchrow(_BACKLOG, OUTBOX_COUNT_CAP)
    assert row is not None
    OUTBOX_BACKLOG.set(row["waiting"])
    OUTBOX_OLDEST_AGE.set(max(0.0, float(row["oldest_s"] or 0)))
