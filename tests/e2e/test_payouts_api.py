"""``/v1/payouts`` against the running gateway: acceptance, idempotency, refusals, callbacks.

Only the gateway's side: nothing here needs payment-worker. "Nothing written" is checked on the
tables a payout touches (payout_requests, payouts, outbox).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support.api import signed_get, signed_headers
from support.processes import ops_url

from e2e.conftest import Stack
from fundhub.common.sealing import unseal
from fundhub.common.signing import body_signature

ACCOUNT = "6222000555001"
OTHER = "6222000555002"
PATH = "/v1/payouts"


def payout(request_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": request_id,
        "supplierId": "SUP10001",
        "payerAccountId": ACCOUNT,
        "amount": 1000,
        "currency": "CNY",
        "payee": {
            "accountName": "Acme Ltd",
            "accountNo": "6217000010001234567",
            "bankName": "ICBC",
        },
    }
    body.update(changes)
    return body


async def post(
    stack: Stack, key: tuple[str, str], body: dict[str, Any] | bytes, path: str = PATH
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(key[0], key[1], "POST", path, body=raw)
    return await stack.http.post(path, content=raw, headers=headers)


async def counts(stack: Stack) -> tuple[int, int, int]:
    row = await stack.env.pool.fetchrow(
        "SELECT (SELECT count(*) FROM payout_requests) AS r, (SELECT count(*) FROM payouts) AS p,"
        " (SELECT count(*) FROM outbox) AS o"
    )
    return row["r"], row["p"], row["o"]


def assert_signed(response: httpx.Response, secret: str) -> None:
    assert response.headers["X-Signature"] == body_signature(secret, response.content)


@pytest.fixture(scope="module")
def writer(stack: Stack) -> tuple[str, str]:
    return stack.env.create_api_key("payouts:write,payouts:read", ACCOUNT)


async def test_accept_then_read_by_id_and_request_id(stack: Stack, writer: tuple[str, str]) -> None:
    before = await counts(stack)
    body = payout("acc-1", currency="RMB", purpose="May invoices", extension={"order": "O-1"})
    response = await post(stack, writer, body)
    assert response.status_code == 202, response.text
    assert_signed(response, writer[1])
    answer = response.json()
    assert answer["statusCode"] == 202 and answer["bizCode"] == "PROCESSING"
    assert answer["state"] == "PROCESSING" and answer["requestId"] == "acc-1"
    assert answer["payId"].startswith("PAY") and len(answer["payId"]) == 21
    assert (answer["amount"], answer["currency"], answer["supplierId"]) == (1000, "CNY", "SUP10001")
    assert answer["extension"] == {"order": "O-1"}
    assert answer["timestamp"].endswith("Z")
    assert await counts(stack) == (before[0] + 1, before[1] + 1, before[2] + 1)

    row = await stack.env.pool.fetchrow(
        "SELECT *, extract(epoch FROM deadline_at - created_at) AS deadline_s,"
        " extract(epoch FROM next_poll_at - created_at) AS poll_s FROM payouts WHERE pay_id = $1",
        answer["payId"],
    )
    assert row["state"] == "PROCESSING" and row["key_id"] == writer[0]
    assert row["payee"] == body["payee"] and row["purpose"] == "May invoices"
    assert round(float(row["deadline_s"])) == 600 and round(float(row["poll_s"])) == 5
    command = await stack.env.pool.fetchrow(
        "SELECT topic, key, payload, headers FROM outbox ORDER BY id DESC LIMIT 1"
    )
    assert command["topic"].endswith("payouts.commands.v1") and command["key"] == ACCOUNT
    envelope = json.loads(bytes(command["payload"]))
    assert envelope["type"] == "payout.requested"
    # The relay sends these as Kafka headers: an object of strings, as every outbox row has.
    assert command["headers"] == {
        "correlation-id": envelope["correlationId"],
        "message-type": "payout.requested",
    }
    assert envelope["data"] == {"payId": answer["payId"]}

    by_id = await signed_get(stack.http, *writer, f"{PATH}/{answer['payId']}")
    assert by_id.status_code == 202 and by_id.content == response.content
    assert_signed(by_id, writer[1])
    by_request = await signed_get(stack.http, *writer, PATH, [("requestId", "acc-1")])
    assert by_request.status_code == 202 and by_request.content == response.content
    assert_signed(by_request, writer[1])

    # The same request again (other key order, same meaning): the same payout, nothing new.
    again = await post(stack, writer, dict(reversed(list(body.items()))))
    assert again.status_code == 202 and again.content == response.content
    assert await counts(stack) == (before[0] + 1, before[1] + 1, before[2] + 1)


async def test_unknown_payouts_are_signed_404s(stack: Stack, writer: tuple[str, str]) -> None:
    for path, query in (
        (f"{PATH}/PAY202501010000999999", None),
        (f"{PATH}/not-a-pay-id", None),
        (PATH, [("requestId", "never-sent")]),
    ):
        response = await signed_get(stack.http, *writer, path, query)
        assert response.status_code == 404, response.text
        assert response.json()["errorCode"] == "E009_NOT_FOUND"
        assert_signed(response, writer[1])
    missing = await signed_get(stack.http, *writer, PATH)
    assert missing.status_code == 400 and missing.json()["errorCode"] == "E001"
    assert missing.json()["msg"].startswith("requestId:")
    assert_signed(missing, writer[1])


def _without(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


BAD_INPUT: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("requestId", _without("requestId")),
    ("supplierId", _without("supplierId")),
    ("payerAccountId", _without("payerAccountId")),
    ("amount", _without("amount")),
    ("currency", _without("currency")),
    ("payee", _without("payee")),
    ("payee.accountNo", _without("payee", "accountNo")),
    ("amount", _set(0, "amount")),
    ("amount", _set(-100, "amount")),
    ("amount", _set(1.5, "amount")),
    ("amount", _set(100.0, "amount")),
    ("amount", _set("100", "amount")),
    ("amount", _set(True, "amount")),
    ("amount", _set(10**16, "amount")),
    ("amount", _set(None, "amount")),
    ("currency", _set("XYZ", "currency")),
    ("currency", _set("cny", "currency")),
    ("currency", _set(156, "currency")),
    ("requestId", _set("r" * 65, "requestId")),
    ("requestId", _set("has space", "requestId")),
    ("supplierId", _set("s" * 33, "supplierId")),
    ("supplierId", _set(10001, "supplierId")),
    ("payerAccountId", _set("a" * 33, "payerAccountId")),
    ("payee", _set("Acme", "payee")),
    ("payee.accountName", _set("n" * 101, "payee", "accountName")),
    ("payee.accountNo", _set("1" * 35, "payee", "accountNo")),
    ("payee.bankName", _set("b" * 121, "payee", "bankName")),
    ("payee.bankName", _set("", "payee", "bankName")),
    ("purpose", _set("p" * 201, "purpose")),
    ("callbackUrl", _set("ftp://example.com/cb", "callbackUrl")),
    ("callbackUrl", _set("https://example.com/" + "c" * 500, "callbackUrl")),
    ("extension", _set("not an object", "extension")),
    ("extension", _set({"blob": "x" * 5000}, "extension")),
    ("unexpected", _set(1, "unexpected")),
    ("payee.iban", _set("DE00", "payee", "iban")),
]


async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    stack: Stack, writer: tuple[str, str]
) -> None:
    before = await counts(stack)
    for number, (field, change) in enumerate(BAD_INPUT):
        body = payout(f"bad-{number}")
        change(body)
        response = await post(stack, writer, body)
        answer = response.json()
        assert response.status_code == 400, (field, answer)
        assert (answer["bizCode"], answer["errorCode"], answer["statusCode"]) == (
            "FAILED",
            "E001",
            400,
        )
        assert answer["msg"].startswith(f"{field}: "), (field, answer["msg"])
        assert_signed(response, writer[1])
    for raw in (b"", b"not json", b"[1, 2]", b'{"amount": 1, "amount": 2}', b"\xff\xfe"):
        response = await post(stack, writer, raw)
        assert response.status_code == 400 and response.json()["errorCode"] == "E001", raw
        assert response.json()["msg"].startswith("body: ")
    assert await counts(stack) == before


async def test_callback_urls_inside_are_refused_at_request_time(
    stack: Stack, writer: tuple[str, str]
) -> None:
    """The stack runs without FUNDHUB_CALLBACK_ALLOW_CIDRS, as production does."""
    before = await counts(stack)
    for number, url in enumerate(
        [
            "http://127.0.0.1:8003/cb",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://localhost./",
            "http://a.localhost/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
        ]
    ):
        response = await post(stack, writer, payout(f"ssrf-{number}", callbackUrl=url))
        answer = response.json()
        assert response.status_code == 400, (url, answer)
        assert answer["errorCode"] == "E001", (url, answer)
        assert answer["msg"].startswith("callbackUrl: must not point to a loopback"), answer
        assert_signed(response, writer[1])
    assert await counts(stack) == before
    accepted = await post(stack, writer, payout("ssrf-ok", callbackUrl="https://erp.example/cb"))
    assert accepted.status_code == 202, accepted.text


async def test_bodies_over_the_routes_limit_are_refused(
    stack: Stack, writer: tuple[str, str]
) -> None:
    before = await counts(stack)
    huge = json.dumps(payout("huge", extension={"x": "y" * (1024 * 1024)})).encode()
    response = await post(stack, writer, huge)
    assert response.status_code == 413 and response.json()["errorCode"] == "E011_PAYLOAD_TOO_LARGE"

    async def chunks() -> Any:  # no Content-Length: the limit holds while streaming too
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    headers = signed_headers(*writer, "POST", PATH, body=huge)
    streamed = await stack.http.post(PATH, content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert streamed.json()["errorCode"] == "E011_PAYLOAD_TOO_LARGE"
    assert await counts(stack) == before


async def test_auth_refusals(stack: Stack, writer: tuple[str, str]) -> None:
    reader = stack.env.create_api_key("balance:read,payouts:read", ACCOUNT)
    other = stack.env.create_api_key("payouts:write,payouts:read", OTHER)
    before = await counts(stack)

    def refused(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["errorCode"] == code

    refused(await post(stack, reader, payout("auth-1")), 403, "E007_SCOPE_FORBIDDEN")
    refused(await post(stack, other, payout("auth-2")), 403, "E008_ACCOUNT_FORBIDDEN")
    raw = json.dumps(payout("auth-3")).encode()
    bad = signed_headers(writer[0], "not-the-secret", "POST", PATH, body=raw)
    refused(await stack.http.post(PATH, content=raw, headers=bad), 401, "E002")
    # Signed over one body, sent with another: the body is part of the signature.
    good = signed_headers(*writer, "POST", PATH, body=raw)
    tampered = json.dumps(payout("auth-3", amount=999999)).encode()
    refused(await stack.http.post(PATH, content=tampered, headers=good), 401, "E002")
    refused(await stack.http.post(PATH, content=raw), 401, "E002")
    stale = signed_headers(*writer, "POST", PATH, body=raw, timestamp=int(time.time()) - 600)
    refused(await stack.http.post(PATH, content=raw, headers=stale), 401, "E005_TIMESTAMP_SKEW")
    assert await counts(stack) == before

    accepted = await post(stack, writer, payout("auth-4"))
    pay_id = accepted.json()["payId"]
    # The nonce is recorded with the payout, in one statement: the same signed request sent
    # again (a replay), or another request under a used nonce, is refused and writes nothing.
    nonce = "replayed-nonce-0001"
    raw = json.dumps(payout("auth-5")).encode()
    once = signed_headers(*writer, "POST", PATH, body=raw, nonce=nonce)
    assert (await stack.http.post(PATH, content=raw, headers=once)).status_code == 202
    after = await counts(stack)
    replay = await stack.http.post(PATH, content=raw, headers=once)
    refused(replay, 401, "E006_NONCE_REPLAYED")
    assert_signed(replay, writer[1])
    raw = json.dumps(payout("auth-6")).encode()
    reused = signed_headers(*writer, "POST", PATH, body=raw, nonce=nonce)
    refused(await stack.http.post(PATH, content=raw, headers=reused), 401, "E006_NONCE_REPLAYED")
    assert await counts(stack) == after
    # Reading: payouts:read, and only payouts of the key's own accounts.
    balance_only = stack.env.create_api_key("balance:read", ACCOUNT)
    refused(
        await signed_get(stack.http, *balance_only, f"{PATH}/{pay_id}"), 403, "E007_SCOPE_FORBIDDEN"
    )
    # Another tenant's payout answers as a missing one would (no existence oracle).
    foreign = await signed_get(stack.http, *other, f"{PATH}/{pay_id}")
    refused(foreign, 404, "E009_NOT_FOUND")
    assert_signed(foreign, other[1])
    # Another key's requestId is not found: requestIds are per key.
    refused(
        await signed_get(stack.http, *other, PATH, [("requestId", "auth-4")]), 404, "E009_NOT_FOUND"
    )
    ok = await signed_get(stack.http, *reader, f"{PATH}/{pay_id}")
    assert ok.status_code == 202 and ok.json()["payId"] == pay_id


async def test_twenty_concurrent_copies_make_one_payout(
    stack: Stack, writer: tuple[str, str]
) -> None:
    before = await counts(stack)
    body = payout("race-1", amount=4242)
    responses = await asyncio.gather(*(post(stack, writer, body) for _ in range(20)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.content for r in responses}) == 1, [r.text for r in responses]
    for response in responses:
        assert_signed(response, writer[1])
    assert await counts(stack) == (before[0] + 1, before[1] + 1, before[2] + 1)
    rows = await stack.env.pool.fetch("SELECT pay_id FROM payouts WHERE request_id = 'race-1'")
    assert [r["pay_id"] for r in rows] == [responses[0].json()["payId"]]
    # However they were grouped into statements, every copy went through one (group commit).
    metrics = (await stack.http.get(f"{ops_url(stack.gateway)}/metrics")).text
    written = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("fundhub_gateway_payout_admit_batch_size_sum")
    )
    assert written >= 20


async def test_same_request_id_with_another_body_conflicts(
    stack: Stack, writer: tuple[str, str]
) -> None:
    first = await post(stack, writer, payout("conflict-1"))
    assert first.status_code == 202
    before = await counts(stack)
    for change in ({"amount": 1001}, {"currency": "USD"}, {"purpose": "another"}):
        response = await post(stack, writer, payout("conflict-1", **change))
        assert response.status_code == 409, response.text
        answer = response.json()
        assert answer["errorCode"] == "E010_IDEMPOTENCY_CONFLICT"
        assert answer["msg"].startswith("requestId: ")
        assert_signed(response, writer[1])
    assert await counts(stack) == before
    # Another key may use the same requestId for its own payout.
    second_key = stack.env.create_api_key("payouts:write", ACCOUNT)
    other = await post(stack, second_key, payout("conflict-1", amount=1001))
    assert other.status_code == 202 and other.json()["payId"] != first.json()["payId"]


async def test_final_payouts_answer_200(stack: Stack, writer: tuple[str, str]) -> None:
    body = payout("final-1")
    pay_id = (await post(stack, writer, body)).json()["payId"]
    await stack.env.pool.execute(
        "UPDATE payouts SET state = 'FAILED', error_code = 'E004_INSUFFICIENT_FUNDS',"
        " message = 'available balance is insufficient', finished_at = now() WHERE pay_id = $1",
        pay_id,
    )
    again = await post(stack, writer, body)
    answer = again.json()
    assert again.status_code == 200 and answer["statusCode"] == 200
    assert (answer["bizCode"], answer["errorCode"]) == ("FAILED", "E004_INSUFFICIENT_FUNDS")
    read = await signed_get(stack.http, *writer, f"{PATH}/{pay_id}")
    assert read.status_code == 200 and read.content == again.content


async def test_callback_deliveries_are_listed_and_replayed(
    stack: Stack, writer: tuple[str, str]
) -> None:
    accepted = await post(stack, writer, payout("cb-1", callbackUrl="https://erp.example/cb"))
    pay_id = accepted.json()["payId"]
    pool = stack.env.pool
    # What the dispatcher would have written: one delivery that gave up after two attempts.
    delivery_id = await pool.fetchval(
        "INSERT INTO callback_deliveries (pay_id, state, url, key_id, body, status, attempts,"
        " next_attempt_at) VALUES ($1, 'SUCCESS', 'https://erp.example/cb', $2, $3, 'GAVE_UP',"
        " 2, now() + interval '1 day') RETURNING delivery_id",
        pay_id,
        writer[0],
        b"{}",
    )
    await pool.execute(
        "INSERT INTO callback_attempts (delivery_id, status_code, error, duration_ms)"
        " VALUES ($1, 500, NULL, 12), ($1, NULL, 'timed out', 10000),"
        " ($1, NULL, 'ClientConnectorError: Cannot connect to host 10.0.0.7:5432', 3)",
        delivery_id,
    )
    listed = await signed_get(stack.http, *writer, f"{PATH}/{pay_id}/callbacks")
    assert listed.status_code == 200, listed.text
    assert_signed(listed, writer[1])
    [delivery] = listed.json()["deliveries"]
    assert (delivery["state"], delivery["status"], delivery["attemptCount"]) == (
        "SUCCESS",
        "GAVE_UP",
        2,
    )
    assert delivery["deliveredAt"] is None and delivery["nextAttemptAt"] is None
    assert [(a["statusCode"], a["error"], a["durationMs"]) for a in delivery["attempts"]] == [
        (500, None, 12),
        (None, "timed out", 10000),
        (None, "failed", 3),  # a client library's text never reaches the tenant
    ]

    replay_path = f"{PATH}/{pay_id}/callbacks/replay"
    refused = await post(stack, writer, b"", path=replay_path)
    assert refused.status_code == 403 and refused.json()["errorCode"] == "E007_SCOPE_FORBIDDEN"
    admin = stack.env.create_api_key("admin", "*")
    replayed = await post(stack, admin, b"", path=replay_path)
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["replayed"] == 1
    assert_signed(replayed, admin[1])
    row = await pool.fetchrow(
        "SELECT status, next_attempt_at <= now() AS due FROM callback_deliveries"
        " WHERE delivery_id = $1",
        delivery_id,
    )
    assert (row["status"], row["due"]) == ("PENDING", True)
    unknown = await post(stack, admin, b"", path=f"{PATH}/PAY202501010000999999/callbacks/replay")
    assert unknown.status_code == 404

    await pool.execute(
        "UPDATE callback_deliveries SET status = 'GAVE_UP' WHERE delivery_id = $1", delivery_id
    )
    out = stack.env.cli("callbacks", "replay", pay_id)
    assert "1 callback deliveries due again" in out
    assert (
        await pool.fetchval(
            "SELECT status FROM callback_deliveries WHERE delivery_id = $1", delivery_id
        )
        == "PENDING"
    )
    with pytest.raises(AssertionError, match="unknown payout"):
        stack.env.cli("callbacks", "replay", "PAY202501010000999999")


async def test_api_keys_get_a_sealed_webhook_secret(stack: Stack) -> None:
    out = json.loads(
        stack.env.cli(
            "api-key", "create", "--name", "erp", "--scopes", "payouts:write,payouts:read",
            "--accounts", ACCOUNT, "--json",
        )
    )  # fmt: skip
    assert set(out) == {"keyId", "secret", "webhookSecret", "environment", "expiresAt"}
    assert (out["environment"], out["expiresAt"]) == ("sandbox", None)
    assert out["webhookSecret"] != out["secret"] and len(out["webhookSecret"]) == 43
    sealed = await stack.env.pool.fetchval(
        "SELECT webhook_secret_sealed FROM api_keys WHERE key_id = $1", out["keyId"]
    )
    assert out["webhookSecret"].encode() not in bytes(sealed)
    master_key = stack.env.settings.master_key
    assert master_key is not None
    assert unseal(bytes(sealed), master_key).decode() == out["webhookSecret"]
