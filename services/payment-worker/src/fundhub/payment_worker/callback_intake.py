"""The dispatcher's intake: ``payout.callback`` messages become ``callback_deliveries`` rows.

One transaction per polled batch (inbox ids and rows together), offsets committed after it; a
message that can never become a row is dead-lettered, so the partition never stops.
"""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError

from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, dead_letter, make_consumer
from fundhub.common.topics import Topics
from fundhub.payment_worker.dispatch_store import (
    CONSUMER,
    INFRA_ERRORS,
    RETRY_BACKOFF_S,
    NewDelivery,
    insert_deliveries,
)

log = structlog.get_logger(__name__)

INTAKE = Counter(
    "fundhub_callback_dispatcher_messages_total", "payout.callback messages by outcome", ["outcome"]
)
MESSAGE_TYPE = "payout.callback"
MAX_BATCH = 500
# Errors that depend on the data (e.g. a payId with no payouts row): retrying cannot help.
DETERMINISTIC_DB_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


class PoisonMessage(Exception):
    """A message that can never become a delivery; it is dead-lettered with this reason."""


def decode_callback(raw: bytes | None) -> NewDelivery:
    if raw is None:
        raise PoisonMessage("empty message")
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as exc:
        raise PoisonMessage(f"not an envelope: {exc.errors()[0]['msg']}") from exc
    if envelope.type != MESSAGE_TYPE:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    data = envelope.data
    fields = {name: data.get(name) for name in ("payId", "state", "url", "keyId")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise PoisonMessage(f"{name}: must be a non-empty string")
    body = data.get("body")
    if not isinstance(body, dict):
        raise PoisonMessage("body: must be a JSON object")
    return NewDelivery(
        message_id=envelope.id,
        pay_id=str(fields["payId"]),
        state=str(fields["state"]),
        url=str(fields["url"]),
        key_id=str(fields["keyId"]),
        body=orjson.dumps(body),
    )


class CallbackIntake:
    """topic -> ``callback_deliveries``: one transaction per polled batch, offsets after it."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        pool: asyncpg.Pool,
        publisher: KafkaPublisher,
        wake: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._pool = pool
        self._publisher = publisher
        self._wake = wake
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        consumer = make_consumer(
            self._settings, self._topics.group(CONSUMER), self._topics.client_callbacks
        )
        self._consumer = consumer
        await consumer.start()
        log.info("consumer_started", topic=self._topics.client_callbacks)
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                if not polled:
                    continue
                await self._process_until_done([r for tp in sorted(polled) for r in polled[tp]])
                await consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in polled.items()}
                )
        finally:
            await consumer.stop()

    async def _process_until_done(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Infrastructure failures retry the same batch; data failures park the culprit."""
        attempt = 0
        while True:
            try:
                await self._process(records)
                return
            except DETERMINISTIC_DB_ERRORS as exc:
                if len(records) == 1:
                    await dead_letter(
                        self._publisher, self._settings, records[0], f"database refused: {exc}"
                    )
                    INTAKE.labels("dead-lettered").inc()
                    return
                for record in records:
                    await self._process_until_done([record])
                return
            except INFRA_ERRORS as exc:
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.error("batch_failed_will_retry", error=str(exc), attempt=attempt, delay=delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        deliveries: list[NewDelivery] = []
        poison: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for record in records:
            try:
                deliveries.append(decode_callback(record.value))
            except PoisonMessage as exc:
                poison.append((record, str(exc)))
        async with self._pool.acquire() as conn, conn.transaction():
            created = await insert_deliveries(conn, deliveries) if deliveries else 0
            # Parked before the commit: a crash in between re-parks (harmless), never loses.
            for record, reason in poison:
                await dead_letter(self._publisher, self._settings, record, reason)
        INTAKE.labels("created").inc(created)
        INTAKE.labels("duplicate").inc(len(deliveries) - created)
        INTAKE.labels("dead-lettered").inc(len(poison))
        if created:
            self._wake.set()
            log.info("deliveries_created", created=created, batch=len(records))

    async def kafka_ready(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())
