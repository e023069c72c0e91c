"""Batch payout results: the parser's all-or-nothing rule, the gateway's intake of a signed batch
(Kafka faked), and the worker's reading of both envelope shapes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

import orjson
import pytest

from fundhub.bank_simulator.notifications import resign
from fundhub.bank_simulator.payout_callbacks import (
    build_result_notification,
    build_results_notification,
)
from fundhub.bank_transfers.bank_apps import BankApp, BankAppStore
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed
from fundhub.common.signing import generate_rsa_keypair, load_public_key
from fundhub.common.topics import topics
from fundhub.gateway.bank_callbacks import (
    TYPE_PAYOUT_RESULT,
    BankNotificationIntake,
    Refusal,
    result_item_message_id,
)
from fundhub.payouts.bank import RESULTS_METHOD, BankStatus
from fundhub.payouts.bank_results import (
    MAX_BATCH_RESULTS,
    InvalidBankResult,
    parse_bank_result,
    parse_bank_results,
)
from fundhub.payouts.messages import PoisonMessage, decode_result

APP_ID = "2021091188888888"


def item(n: int, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "bank_request_id": f"PAY{n:06d}",
        "bank_txn_id": f"BTX{n:06d}",
        "status": "SUCCESS",
        "reason": "",
        "amount": str(1000 + n),
        "finished_time": "2025-04-30 14:00:02",
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not ...}


def items(count: int) -> list[dict[str, Any]]:
    return [item(n) for n in range(count)]


# --- the parser -----------------------------------------------------------------------------


def test_a_valid_batch_yields_every_result_and_its_item() -> None:
    sent = [
        item(0, bank_extra="kept"),
        item(1, status="FAILED", reason="payee account closed"),
        item(2, status="PROCESSING", finished_time=""),
        item(0, bank_extra="kept"),  # a duplicate copy gathered with the first
    ]
    parsed = parse_bank_results({"results": sent, "batch_no": "ignored"})
    assert [p.item for p in parsed] == sent
    pay_ids = [p.result.bank_request_id for p in parsed]
    assert pay_ids == ["PAY000000", "PAY000001", "PAY000002", "PAY000000"]
    assert parsed[1].result.status is BankStatus.FAILED
    assert parsed[1].result.reason == "payee account closed"
    assert parsed[2].result.finished_time is None
    assert parsed[0].result == parse_bank_result(sent[0]), "an item reads as a single result"
    assert len(parse_bank_results({"results": items(MAX_BATCH_RESULTS)})) == MAX_BATCH_RESULTS


def with_item(index: int, bad: Any, count: int = 5) -> dict[str, Any]:
    results: list[Any] = items(count)
    results[index] = bad
    return {"results": results}


@pytest.mark.parametrize(
    ("biz", "reason"),
    [
        ({}, "biz_content.results: missing"),
        ({"results": None}, "biz_content.results: missing"),
        ({"results": "[]"}, "biz_content.results: not a JSON array"),
        ({"results": {"0": item(0)}}, "biz_content.results: not a JSON array"),
        ({"results": []}, "biz_content.results: empty"),
        (
            {"results": items(MAX_BATCH_RESULTS + 1)},
            f"biz_content.results: more than {MAX_BATCH_RESULTS} items",
        ),
        (with_item(3, "PAY000003"), "biz_content.results[3]: not a JSON object"),
        (with_item(0, None), "biz_content.results[0]: not a JSON object"),
        (with_item(4, [item(4)]), "biz_content.results[4]: not a JSON object"),
        (with_item(3, item(3, amount=...)), "biz_content.results[3].amount: missing"),
        (
            with_item(1, item(1, amount="-5")),
            "biz_content.results[1].amount: not a positive integer amount of fen",
        ),
        (with_item(2, item(2, amount=1002)), "biz_content.results[2].amount: not a string"),
        (
            with_item(2, item(2, bank_request_id="P" * 65)),
            "biz_content.results[2].bank_request_id: longer than 64 characters",
        ),
        (
            with_item(0, item(0, status="DONE")),
            "biz_content.results[0].status: not one of PROCESSING, SUCCESS, FAILED, RETURNED",
        ),
        (
            with_item(4, item(4, finished_time=...)),
            "biz_content.results[4].finished_time: missing",
        ),
        (
            with_item(4, item(4, finished_time="2025-04-30T14:00:02")),
            "biz_content.results[4].finished_time: expected yyyy-MM-dd HH:mm:ss",
        ),
        (with_item(1, item(1, reason=7)), "biz_content.results[1].reason: not a string"),
    ],
)
def test_one_unreadable_item_refuses_the_whole_batch(biz: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidBankResult) as refused:
        parse_bank_results(biz)
    assert str(refused.value) == reason


def test_the_single_result_keeps_its_reasons() -> None:
    with pytest.raises(InvalidBankResult, match=r"^biz_content\.amount: missing$"):
        parse_bank_result(item(0, amount=...))


# --- the gateway ----------------------------------------------------------------------------


class FakePublisher(KafkaPublisher):
    """Records what would be sent; fails every send while ``down``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: list[OutgoingMessage] = []
        self.calls = 0
        self.down = False

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        self.calls += 1
        if self.down:
            raise PublishFailed("KafkaTimeoutError: no broker")
        self.sent.extend(messages)


class FakeApps:
    def __init__(self, public_pem: str) -> None:
        self.app = BankApp(APP_ID, load_public_key(public_pem), ("sign",))

    async def get(self, app_id: str) -> BankApp | None:
        return self.app if app_id == APP_ID else None


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def publisher(settings: Settings) -> FakePublisher:
    return FakePublisher(settings)


@pytest.fixture
def intake(
    settings: Settings, publisher: FakePublisher, keys: tuple[str, str]
) -> BankNotificationIntake:
    apps = cast(BankAppStore, FakeApps(keys[1]))
    return BankNotificationIntake(settings, topics(settings), apps, publisher)


def batch(results: list[dict[str, Any]], keys: tuple[str, str]) -> bytes:
    """Signed by the bank's own builder, then its biz_content swapped in (re-signed): so a
    test can send items the builder itself would never produce."""
    params = build_results_notification(items(1), APP_ID, keys[0])
    params["biz_content"] = json.dumps({"results": results}, ensure_ascii=False)
    return orjson.dumps(resign(params, keys[0]))


async def test_a_signed_batch_becomes_one_message_per_result(
    intake: BankNotificationIntake,
    publisher: FakePublisher,
    settings: Settings,
    keys: tuple[str, str],
) -> None:
    sent = items(7)
    assert await intake.accept(batch(sent, keys), "corr-1") is None
    assert publisher.calls == 1, "all in one call"
    assert [m.topic for m in publisher.sent] == [topics(settings).bank_payout_results] * 7
    assert [m.key for m in publisher.sent] == [i["bank_request_id"].encode() for i in sent]
    envelopes = [Envelope.from_bytes(m.value) for m in publisher.sent]
    assert [e.id for e in envelopes] == [result_item_message_id(APP_ID, i) for i in sent]
    assert len({e.id for e in envelopes}) == 7
    first = envelopes[0]
    assert (first.type, first.correlation_id) == (TYPE_PAYOUT_RESULT, "corr-1")
    assert first.data["appId"] == APP_ID and first.data["result"] == sent[0]
    assert first.data["notification"]["method"] == RESULTS_METHOD
    assert set(first.data) == {"appId", "result", "notification", "receivedAt"}
    # The worker rebuilds each result from its own message alone.
    decoded = decode_result(publisher.sent[3].value)
    assert (decoded.message_id, decoded.pay_id) == (envelopes[3].id, "PAY000003")
    assert decoded.result.amount == 1003 and decoded.result.status is BankStatus.SUCCESS


async def test_a_result_has_one_id_however_it_arrives(
    intake: BankNotificationIntake, publisher: FakePublisher, keys: tuple[str, str]
) -> None:
    sent = items(4)
    await intake.accept(batch(sent, keys), "c1")
    first_ids = {m.key: Envelope.from_bytes(m.value).id for m in publisher.sent}
    publisher.sent.clear()

    # The bank's retry: a new timestamp and signature over the same batch.
    replay = resign(orjson.loads(batch(sent, keys)), keys[0], now=utcnow() + timedelta(seconds=5))
    assert await intake.accept(orjson.dumps(replay), "c2") is None
    # Another batch with two of the same results, a copy twice, in another order.
    assert await intake.accept(batch([sent[2], sent[0], sent[2]], keys), "c3") is None
    # And one sent singly.
    single = build_result_notification(sent[1], APP_ID, keys[0])
    assert await intake.accept(orjson.dumps(single), "c4") is None

    again = [(m.key, Envelope.from_bytes(m.value).id) for m in publisher.sent]
    assert len(again) == 4 + 3 + 1
    assert all(first_ids[key] == message_id for key, message_id in again)


async def test_a_batch_with_one_bad_item_is_refused_whole(
    intake: BankNotificationIntake, publisher: FakePublisher, keys: tuple[str, str]
) -> None:
    sent: list[Any] = items(6)
    sent[3] = item(3, amount=...)
    refusal = await intake.accept(batch(sent, keys), "c1")
    assert refusal == Refusal(400, "biz_content.results[3].amount: missing")
    assert publisher.calls == 0 and publisher.sent == []


@pytest.mark.parametrize(
    ("biz_content", "reason"),
    [
        ("not json", "biz_content: not a JSON object"),
        ("[1, 2]", "biz_content: not a JSON object"),
        ('{"results": []}', "biz_content.results: empty"),
        ('{"result": {}}', "biz_content.results: missing"),
    ],
)
async def test_an_unreadable_batch_is_refused(
    intake: BankNotificationIntake,
    publisher: FakePublisher,
    keys: tuple[str, str],
    biz_content: str,
    reason: str,
) -> None:
    params = build_results_notification(items(1), APP_ID, keys[0])
    params["biz_content"] = biz_content
    assert await intake.accept(orjson.dumps(resign(params, keys[0])), "c") == Refusal(400, reason)
    assert publisher.calls == 0


async def test_a_forged_batch_is_refused_before_it_is_read(
    intake: BankNotificationIntake, publisher: FakePublisher, keys: tuple[str, str]
) -> None:
    params = orjson.loads(batch(items(2), keys))
    params["biz_content"] = json.dumps({"results": [item(0, amount="999999")]})
    refusal = await intake.accept(orjson.dumps(params), "c")
    assert refusal == Refusal(401, "signature verification failed")
    assert publisher.calls == 0


async def test_kafka_away_answers_503_so_the_bank_retries_the_batch(
    intake: BankNotificationIntake, publisher: FakePublisher, keys: tuple[str, str]
) -> None:
    publisher.down = True
    refusal = await intake.accept(batch(items(3), keys), "c")
    assert refusal == Refusal(503, "temporarily unavailable, retry later")


async def test_the_single_result_still_travels_whole(
    intake: BankNotificationIntake, publisher: FakePublisher, keys: tuple[str, str]
) -> None:
    single = build_result_notification(item(9), APP_ID, keys[0])
    assert await intake.accept(orjson.dumps(single), "c") is None
    (message,) = publisher.sent
    envelope = Envelope.from_bytes(message.value)
    assert message.key == b"PAY000009" and envelope.data["params"] == single
    assert decode_result(message.value).result.amount == 1009


# --- the worker -----------------------------------------------------------------------------


def envelope_bytes(data: dict[str, Any]) -> bytes:
    return Envelope(id="m-1", type=TYPE_PAYOUT_RESULT, correlation_id="c", data=data).to_bytes()


def test_the_worker_reads_both_shapes_alike() -> None:
    biz = item(5, status="RETURNED", reason="returned: account frozen")
    single = envelope_bytes(
        {"appId": APP_ID, "params": {"biz_content": json.dumps(biz)}, "receivedAt": "x"}
    )
    one_of_batch = envelope_bytes({"appId": APP_ID, "result": biz, "receivedAt": "x"})
    decoded = [decode_result(single), decode_result(one_of_batch)]
    assert decoded[0] == decoded[1]
    assert decoded[0].pay_id == "PAY000005" and decoded[0].message_id == "m-1"
    assert decoded[0].result.status is BankStatus.RETURNED


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"result": "PAY1"}, "result: not a JSON object"),
        ({"result": None}, "result: not a JSON object"),
        ({"result": item(1, amount=...)}, "biz_content.amount: missing"),
        ({"params": {"biz_content": "[]"}}, "biz_content: not a JSON object"),
        ({"params": {"biz_content": "{"}}, "malformed payout result"),
        ({"appId": APP_ID}, "malformed payout result"),
    ],
)
def test_an_unreadable_result_message_is_poison(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(PoisonMessage, match=f"^{reason}"):
        decode_result(envelope_bytes(data))
