"""The audit log on the running stack: the gateway and the audit-writer as real processes.

Every answered request has exactly one entry, also when the writer or the gateway is killed
(SIGKILL) while requests are in flight; entries are masked; the API serves them to keys with
``audit:read`` (their own only); the chain verifies afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.processes import Service, free_port, gateway
from support.seed import seed_request

from fundhub.audit.masking import HIDDEN

from .conftest import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def audit_writer(env: ModuleEnv) -> Service:
    port = free_port()
    return Service(
        env, "audit-writer", "fundhub-audit-writer", port, FUNDHUB_AUDIT_WRITER_PORT=str(port)
    )


@dataclass
class AuditStack:
    env: ModuleEnv
    gateway: Service
    writer: Service
    key_id: str
    secret: str


@pytest.fixture(scope="module")
async def audit_stack(env: ModuleEnv) -> AsyncIterator[AuditStack]:
    env.register_bank_app()
    key_id, secret = env.create_api_key("balance:read,audit:read", "ACC1")
    gw, writer = gateway(env), audit_writer(env)
    gw.start()
    writer.start()
    try:
        await asyncio.gather(gw.wait_ready(), writer.wait_ready())
        yield AuditStack(env, gw, writer, key_id, secret)
    finally:
        writer.stop()
        gw.stop()


async def _entries_by_correlation(env: ModuleEnv, ids: list[str]) -> dict[str, int]:
    async with env.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT correlation_id, count(*) AS n FROM audit_log"
            " WHERE correlation_id = ANY($1::text[]) GROUP BY correlation_id",
            ids,
        )
    return {r["correlation_id"]: int(r["n"]) for r in rows}


async def _balance(client: httpx.AsyncClient, s: AuditStack, correlation_id: str) -> httpx.Response:
    path = "/v1/accounts/ACC1/balance"
    headers = signed_headers(s.key_id, s.secret, "GET", path)
    headers["X-Correlation-Id"] = correlation_id
    return await client.get(s.gateway.url + path, headers=headers)


async def _exactly_once(s: AuditStack, answered: list[str]) -> None:
    async def all_in() -> bool:
        return len(await _entries_by_correlation(s.env, answered)) == len(answered)

    await wait_until(all_in, timeout_s=60)
    counts = await _entries_by_correlation(s.env, answered)
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


async def test_requests_and_callbacks_are_audited_masked(audit_stack: AuditStack) -> None:
    s = audit_stack
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await _balance(client, s, "audit-e2e-balance")
        assert answer.status_code == 404
        notification = seed_request()
        callback = await client.post(
            s.gateway.url + "/callbacks/bank",
            json=notification,
            headers={"X-Correlation-Id": "audit-e2e-callback"},
        )
        assert callback.status_code in (200, 400, 401)
    await _exactly_once(s, ["audit-e2e-balance", "audit-e2e-callback"])
    async with s.env.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT correlation_id, body FROM audit_log"
            " WHERE correlation_id LIKE 'audit-e2e-%' ORDER BY seq"
        )
    entries = {r["correlation_id"]: json.loads(r["body"]) for r in rows}
    balance = entries["audit-e2e-balance"]
    assert balance["actor"] == s.key_id and balance["source"] == "127.0.0.1"
    assert balance["route"] == "GET /v1/accounts/{accountId}/balance"
    assert (balance["status"], balance["errorCode"]) == (404, "E009_NOT_FOUND")
    assert balance["params"]["headers"]["x-signature"] == HIDDEN
    bank = entries["audit-e2e-callback"]
    assert bank["route"] == "POST /callbacks/bank" and bank["actor"] is None
    assert bank["params"]["body"]["sign"] == HIDDEN
    text = json.dumps(entries, ensure_ascii=False)
    for secret in (s.secret, notification["sign"], "15489516846", "624615616476846548"):
        assert secret not in text


async def test_the_audit_api_serves_a_keys_own_entries(audit_stack: AuditStack) -> None:
    s = audit_stack
    async with httpx.AsyncClient(base_url=s.gateway.url, timeout=30) as client:
        for n in range(3):
            await _balance(client, s, f"audit-api-{n}")
        await _exactly_once(s, [f"audit-api-{n}" for n in range(3)])
        first = await signed_get(client, s.key_id, s.secret, "/v1/audit/entries", [("limit", "2")])
        assert first.status_code == 200, first.text
        page = first.json()
        assert len(page["items"]) == 2 and page["nextCursor"]
        assert {e["actor"] for e in page["items"]} == {s.key_id}
        second = await signed_get(
            client,
            s.key_id,
            s.secret,
            "/v1/audit/entries",
            [("cursor", page["nextCursor"]), ("limit", "2")],
        )
        assert second.status_code == 200
        assert second.json()["items"][0]["seq"] < page["items"][-1]["seq"]
        other = await signed_get(
            client, s.key_id, s.secret, "/v1/audit/entries", [("keyId", "ak_someone")]
        )
        assert other.status_code == 403
        bad = await signed_get(
            client, s.key_id, s.secret, "/v1/audit/entries", [("cursor", "9" * 20)]
        )
        assert bad.status_code == 400
        reader_id, reader_secret = s.env.create_api_key("balance:read", "ACC1")
        refused = await signed_get(client, reader_id, reader_secret, "/v1/audit/entries")
        assert refused.status_code == 403


async def _load(
    s: AuditStack, prefix: str, total: int, concurrency: int, answered: list[str]
) -> None:
    """``total`` requests, ``concurrency`` at a time; the answered ones' ids in ``answered``."""
    queue = iter(range(total))
    async with httpx.AsyncClient(timeout=10) as client:

        async def worker() -> None:
            for n in queue:
                correlation_id = f"{prefix}-{n}"
                try:
                    response = await _balance(client, s, correlation_id)
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 404:  # the request's real answer
                    answered.append(correlation_id)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def test_an_entry_survives_a_writer_killed_mid_stream(audit_stack: AuditStack) -> None:
    s = audit_stack
    answered: list[str] = []
    load = asyncio.create_task(_load(s, "kill-writer", 400, 8, answered))
    await wait_until(lambda: _at_least(answered, 100), timeout_s=60, interval_s=0.01)
    s.writer.kill()
    await wait_until(lambda: _at_least(answered, 250), timeout_s=60, interval_s=0.01)
    s.writer.start()
    await load
    await s.writer.wait_ready()
    assert len(answered) == 400  # the gateway answers without the writer
    await _exactly_once(s, answered)


async def test_an_entry_survives_a_gateway_killed_mid_request(audit_stack: AuditStack) -> None:
    s = audit_stack
    answered: list[str] = []
    load = asyncio.create_task(_load(s, f"kill-gw-{uuid.uuid4().hex[:6]}", 400, 16, answered))
    await wait_until(lambda: _at_least(answered, 100), timeout_s=60, interval_s=0.01)
    s.gateway.kill()
    await load
    s.gateway.start()
    await s.gateway.wait_ready()
    assert 100 <= len(answered) < 400
    await _exactly_once(s, answered)
    verified = s.env.cli("audit", "verify", "--json")
    assert json.loads(verified)["ok"]


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n
