"""Poison messages go to the dead-letter topic with their reason; the consumer keeps going."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from support.ledger import balances

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.bank_transfers.notification import notification_message_id
from fundhub.common.envelope import HEADER_DEAD_LETTER_REASON, Envelope
from fundhub.common.topics import topics


async def _dead_letters(stack: Stack, expected: int) -> list[tuple[bytes | None, str]]:
    consumer = AIOKafkaConsumer(
        topics(stack.env.settings).dead_letter,
        bootstrap_servers=stack.env.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[bytes | None, str]] = []
    try:
        for _ in range(100):
            polled = await consumer.getmany(timeout_ms=200)
            for records in polled.values():
                for r in records:
                    reason = dict(r.headers).get(HEADER_DEAD_LETTER_REASON, b"").decode()
                    found.append((r.value, reason))
            if len(found) >= expected:
                break
    finally:
        await consumer.stop()
    return found


async def test_poison_is_parked_and_the_next_message_applies(stack: Stack) -> None:
    """Bypasses the gateway, as a bug upstream or a hand-written message would."""
    settings = stack.env.settings
    topic = topics(settings).bank_transfer_notify
    account = "6222000333001"
    good = build_notification(
        TransferSpec(record_id="after-poison", in_acct_no=account, trans_amount=777),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    # Valid to the decoder, but Postgres cannot store a NUL in the jsonb of the parameters.
    unstorable = dict(good, extra="nul\x00here")
    unstorable["biz_content"] = good["biz_content"].replace("after-poison", "poison-db")

    def envelope(params: dict[str, str]) -> bytes:
        return Envelope(
            id=notification_message_id(stack.env.app_id, params["biz_content"]),
            type="bank.transfer-notify.received",
            correlation_id="poison-test",
            data={
                "appId": stack.env.app_id,
                "params": params,
                "receivedAt": "2026-11-21T08:00:00.000Z",
            },
        ).to_bytes()

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in (b"not json at all", envelope(unstorable), envelope(good)):
            await producer.send_and_wait(topic, value, key=account.encode())
    finally:
        await producer.stop()

    async def applied() -> bool:
        return (await balances(stack.env.pool)).get(account) == (777, 0)

    await wait_until(applied, timeout_s=30)
    parked = await _dead_letters(stack, 2)
    reasons = [reason for _, reason in parked]
    assert any(value == b"not json at all" for value, _ in parked), reasons
    assert any("database refused" in reason for reason in reasons), reasons
    stored = await stack.env.pool.fetchval(
        "SELECT count(*) FROM bank_transfer_records WHERE record_id = 'poison-db'"
    )
    assert stored == 0
