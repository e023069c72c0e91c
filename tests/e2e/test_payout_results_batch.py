"""The bank's batch payout results through the real gateway: signed POST -> one Kafka message per
result on the payout-results topic, or a refusal that publishes nothing."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from support.kafka import message_count

from e2e.conftest import Stack
from fundhub.bank_simulator.notifications import resign
from fundhub.bank_simulator.payout_callbacks import build_results_notification
from fundhub.bank_transfers.notification import notification_message_id
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.topics import topics
from fundhub.payouts.bank import RESULTS_METHOD


def result(tag: str, n: int, status: str = "SUCCESS") -> dict[str, str]:
    return {
        "bank_request_id": f"PAY{tag}{n:04d}",
        "bank_txn_id": f"BTX{tag}{n:04d}",
        "status": status,
        "reason": "" if status == "SUCCESS" else "payee account closed",
        "amount": str(100 * (n + 1)),
        "finished_time": "2025-04-30 14:00:02",
    }


async def read_keyed(settings: Settings, expected: int) -> list[tuple[str, Envelope]]:
    """The payout-results topic from the start: (key, envelope), until ``expected`` arrived."""
    consumer = AIOKafkaConsumer(
        topics(settings).bank_payout_results,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[str, Envelope]] = []
    try:
        deadline = time.monotonic() + 15
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(
                    (r.key.decode(), Envelope.from_bytes(r.value))
                    for r in records
                    if r.key is not None and r.value is not None
                )
        return out
    finally:
        await consumer.stop()


async def published(stack: Stack) -> int:
    return await message_count(stack.env.settings, topics(stack.env.settings).bank_payout_results)


async def test_batches_publish_one_message_per_result_and_replays_keep_the_ids(
    stack: Stack,
) -> None:
    env = stack.env
    sent = [result("OK", n, "FAILED" if n % 4 == 3 else "SUCCESS") for n in range(12)]
    params = build_results_notification(sent, env.app_id, env.bank.private_pem)
    response = await stack.post(params)
    assert (response.status_code, response.text) == (200, "success")

    first = await read_keyed(env.settings, 12)
    assert sorted(key for key, _ in first) == sorted(r["bank_request_id"] for r in sent)
    by_key = {key: envelope for key, envelope in first}
    for item in sent:
        envelope = by_key[item["bank_request_id"]]
        assert envelope.data["result"] == item
        assert envelope.data["appId"] == env.app_id
        assert envelope.data["notification"]["method"] == RESULTS_METHOD
        # The id the same result would carry if the bank had sent it singly.
        assert envelope.id == notification_message_id(env.app_id, json.dumps(item))
    assert len({envelope.id for _, envelope in first}) == 12

    # The bank's retry (new timestamp and signature), and a later batch repeating two results.
    replay = resign(params, env.bank.private_pem, now=utcnow() + timedelta(seconds=3))
    assert (await stack.post(replay)).text == "success"
    overlap = build_results_notification([sent[5], sent[0]], env.app_id, env.bank.private_pem)
    assert (await stack.post(overlap)).text == "success"
    everything = await read_keyed(env.settings, 12 + 12 + 2)
    assert len(everything) == 26
    for key, envelope in everything:
        assert envelope.id == by_key[key].id, key


async def test_a_batch_with_one_bad_item_is_refused_and_publishes_nothing(stack: Stack) -> None:
    env = stack.env
    before = await published(stack)
    sent: list[dict[str, Any]] = [result("BAD", n) for n in range(5)]
    del sent[3]["amount"]
    params = build_results_notification(sent, env.app_id, env.bank.private_pem)
    response = await stack.post(params)
    assert response.status_code == 400
    assert response.text == "fail: biz_content.results[3].amount: missing"

    empty = dict(params, biz_content='{"results":[]}')
    refused = await stack.post(resign(empty, env.bank.private_pem))
    assert (refused.status_code, refused.text) == (400, "fail: biz_content.results: empty")
    assert await published(stack) == before
