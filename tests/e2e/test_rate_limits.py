"""Rate limits against the real stack: two gateway processes sharing one Postgres count one limit;
429 E012 with Retry-After (in the bank's dialect on its route); per-key limits set by the CLI;
per-address limits on the bank's callback and on failed authentication; a store out of reach
lets requests through and says so in a metric."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.processes import Service, free_port, gateway, ops_url

from fundhub.common.signing import body_signature

ACCOUNT = "6222000777001"
BALANCE = f"/v1/accounts/{ACCOUNT}/balance"
# Per-address limits low enough to reach in a test; the per-key defaults stay generous.
LIMITS = {
    "FUNDHUB_RATE_LIMIT_BANK_CALLBACK": "6/minute",
    "FUNDHUB_RATE_LIMIT_AUTH_FAILURES": "4/minute",
}


def _gateway(env: ModuleEnv, **extra: str) -> Service:
    service = gateway(env)
    service.extra_env.update(extra)
    return service


@pytest.fixture(scope="module")
async def gateways(env: ModuleEnv) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two replicas of the gateway on one database, as behind a load balancer."""
    replicas = [_gateway(env, **LIMITS), _gateway(env, **LIMITS)]
    for replica in replicas:
        replica.start()
    try:
        await asyncio.gather(*(r.wait_ready() for r in replicas))
        async with (
            httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as first,
            httpx.AsyncClient(base_url=replicas[1].url, timeout=30) as second,
        ):
            yield [first, second]
    finally:
        for replica in replicas:
            replica.stop()


def _create_key(env: ModuleEnv, *extra: str) -> tuple[str, str]:
    out = json.loads(
        env.cli(
            "api-key",
            "create",
            "--name",
            "limits",
            "--scopes",
            "balance:read,payouts:write",
            "--accounts",
            ACCOUNT,
            "--json",
            *extra,
        )
    )
    return out["keyId"], out["secret"]


def _assert_limited(response: httpx.Response, secret: str | None = None) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert (body["statusCode"], body["bizCode"], body["errorCode"]) == (
        429,
        "FAILED",
        "E012_RATE_LIMITED",
    )
    assert int(response.headers["Retry-After"]) >= 1
    if secret is not None:  # the caller is known: its refusal is signed like any answer
        assert response.headers["X-Signature"] == body_signature(secret, response.content)


async def test_one_limit_across_two_replicas(
    env: ModuleEnv, gateways: list[httpx.AsyncClient]
) -> None:
    key_id, secret = _create_key(env, "--rate-limit", "read=10/minute")
    answers = [await signed_get(gateways[i % 2], key_id, secret, BALANCE) for i in range(30)]
    passed = [a for a in answers if a.status_code != 429]
    # 10 in all, not 10 per replica; whatever the route answers (no such account yet: 404).
    assert len(passed) == 10, [a.status_code for a in answers]
    assert {a.status_code for a in passed} == {404}
    for answer in answers[10:]:
        _assert_limited(answer, secret)
    # Counted per route: the key's writes have their own bucket (the default write limit).
    body = json.dumps({"requestId": "rl-1"}).encode()
    headers = signed_headers(key_id, secret, "POST", "/v1/payouts", body=body)
    assert (await gateways[0].post("/v1/payouts", content=body, headers=headers)).status_code == 400


async def test_per_key_limits_on_the_payout_route(
    env: ModuleEnv, gateways: list[httpx.AsyncClient]
) -> None:
    limited_id, limited_secret = _create_key(env, "--rate-limit", "write=3/minute")
    default_id, default_secret = _create_key(env)

    async def submit(key_id: str, secret: str, n: int) -> httpx.Response:
        body = json.dumps(_payout(f"{key_id}-{n}")).encode()
        headers = signed_headers(key_id, secret, "POST", "/v1/payouts", body=body)
        return await gateways[n % 2].post("/v1/payouts", content=body, headers=headers)

    limited = [await submit(limited_id, limited_secret, n) for n in range(6)]
    assert [a.status_code for a in limited] == [202, 202, 202, 429, 429, 429]
    _assert_limited(limited[3], limited_secret)
    # A refused request left no trace: its nonce was not taken, nothing was written.
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM payout_requests WHERE request_id LIKE $1", f"{limited_id}-%"
        )
        == 3
    )
    others = [await submit(default_id, default_secret, n) for n in range(6)]
    assert {a.status_code for a in others} == {202}

    # The operator changes a key's limits with the CLI; `--clear` returns it to the defaults.
    changed_id, changed_secret = _create_key(env)
    assert "write=1/hour" in env.cli("api-key", "rate-limit", changed_id, "write=1/hour")
    changed = [await submit(changed_id, changed_secret, n) for n in range(2)]
    assert [a.status_code for a in changed] == [202, 429]
    env.cli("api-key", "rate-limit", changed_id, "--clear")
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM api_key_rate_limits WHERE key_id = $1", changed_id
        )
        == 0
    )


def _payout(request_id: str) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "supplierId": "SUP10001",
        "payerAccountId": ACCOUNT,
        "amount": 100,
        "currency": "CNY",
        "payee": {"accountName": "Acme Ltd", "accountNo": "6217000010001234567", "bankName": "B"},
    }


async def test_bank_callback_is_limited_per_address_in_its_own_dialect(
    gateways: list[httpx.AsyncClient],
) -> None:
    answers = [await gateways[i % 2].post("/callbacks/bank", content=b"{}") for i in range(9)]
    statuses = [a.status_code for a in answers]
    assert statuses == [400] * 6 + [429] * 3, statuses
    refused = answers[6]
    assert refused.text.startswith("fail: ") and "retry after" in refused.text
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_store_out_of_reach_lets_requests_through_and_counts_it(env: ModuleEnv) -> None:
    dead = f"postgresql://fundhub@127.0.0.1:{free_port()}/nowhere"
    replica = _gateway(
        env,
        FUNDHUB_RATE_LIMIT_DATABASE_URL=dead,
        FUNDHUB_RATE_LIMIT_READ="1/hour",
    )
    replica.start()
    try:
        await replica.wait_ready()
        key_id, secret = _create_key(env)
        async with httpx.AsyncClient(base_url=replica.url, timeout=30) as http:
            answers = [await signed_get(http, key_id, secret, BALANCE) for _ in range(3)]
            # Fail open: the limit (1/hour) is not enforced while its counter is unreachable.
            assert [a.status_code for a in answers] == [404, 404, 404]
            metrics = (await http.get(ops_url(replica) + "/metrics")).text
        line = next(
            m
            for m in metrics.splitlines()
            if m.startswith("fundhub_gateway_rate_limit_store_errors_total ")
        )
        assert float(line.split()[1]) >= 3
    finally:
        replica.stop()


async def test_failed_authentication_is_limited_per_address_before_the_body(
    env: ModuleEnv, gateways: list[httpx.AsyncClient]
) -> None:
    """Last in this module: it leaves 127.0.0.1 refused on these replicas for a while."""
    key_id, secret = _create_key(env)
    bad = {**signed_headers(key_id, secret, "GET", BALANCE), "X-Signature": "0" * 64}
    answers = [await gateways[i % 2].get(BALANCE, headers=bad) for i in range(6)]
    assert [a.status_code for a in answers] == [401] * 4 + [429] * 2
    _assert_limited(answers[4])
    # The address is now refused on every route, a correctly signed request included, on
    # both replicas (the second learns it at its first failure, or from the shared count).
    good = await signed_get(gateways[0], key_id, secret, BALANCE)
    _assert_limited(good)
    # Health probes from that address still answer.
    assert (await gateways[0].get("/healthz")).status_code == 200
