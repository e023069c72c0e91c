"""The callback dispatcher as a real process, started as in production (no
FUNDHUB_CALLBACK_ALLOW_CIDRS): callbacks whose URL is, or resolves to, this machine are refused
at connection time and never arrive; the tenant reads a generic error, the operator's log the
detail."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from integration.test_callback_dispatcher import (
    KEY_ID,
    attempts_of,
    callback_envelope,
    final_payout,
    of,
    publish,
)
from support.env import ModuleEnv, insert_callback_key
from support.processes import Service, callback_dispatcher, running
from support.receivers import serving

from fundhub.webhooks.store import deliveries_of

ERROR_NOT_ALLOWED = "refused: address not allowed"  # as the tenant reads it


class Counting:
    def __init__(self) -> None:
        self.hits = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Counting]:
    counting = Counting()
    app = web.Application()
    app.router.add_post("/{tail:.*}", counting.handle)
    async with serving(app) as url:
        counting.url = url
        yield counting


@pytest.fixture(scope="module")
async def dispatcher(env: ModuleEnv) -> AsyncIterator[Service]:
    await insert_callback_key(env, KEY_ID, secrets.token_urlsafe(32))
    service = callback_dispatcher(env, backoff_base_s=0.3, backoff_max_s=1, timeout_s=2)
    async with running(service):
        yield service


async def attempts_for(env: ModuleEnv, pay_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        delivery_id = await env.pool.fetchval(
            "SELECT delivery_id FROM callback_deliveries WHERE pay_id = $1", pay_id
        )
        if delivery_id is not None:
            attempts = await attempts_of(env, delivery_id)
            if len(attempts) >= count:
                return attempts
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pay_id}: fewer than {count} attempts")


async def test_callbacks_to_this_machine_are_refused_at_connection_time(
    env: ModuleEnv, receiver: Counting, dispatcher: Service
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    # What a tenant could have stored before the request-time check, or what resolves inside:
    # a literal address, a mapped IPv6 form, names the system resolver maps to loopback.
    urls = [
        f"http://127.0.0.1:{port}/literal",
        f"http://[::ffff:127.0.0.1]:{port}/mapped",
        f"http://localhost:{port}/name",
        f"http://0x7f000001:{port}/hex",
    ]
    rows = [await final_payout(env, url) for url in urls]
    await publish(env, [of(env, callback_envelope(row), row["pay_id"]) for row in rows])
    for row in rows:
        attempts = await attempts_for(env, row["pay_id"], 2)
        assert {a["error"] for a in attempts} == {ERROR_NOT_ALLOWED}, row["callback_url"]
        assert {a["status_code"] for a in attempts} == {None}
        shown = await deliveries_of(env.pool, row["pay_id"])
        assert shown[0]["status"] == "PENDING"  # retried, in case the operator allows it
        assert {a["error"] for a in shown[0]["attempts"]} == {ERROR_NOT_ALLOWED}
    assert receiver.hits == 0
    # The operator sees which address was refused; the tenant never does.
    assert "callback address not allowed" in dispatcher.tail(400)


async def test_tenants_read_only_generic_attempt_errors(
    env: ModuleEnv, receiver: Counting, dispatcher: Service
) -> None:
    """An attempt error recorded with a client library's text (as before this fix) is shown
    as a bare "failed"; the generic ones pass as they are."""
    row = await final_payout(env, "https://erp.example/cb")
    delivery_id = await env.pool.fetchval(
        "INSERT INTO callback_deliveries (pay_id, state, url, key_id, body, status) "
        "VALUES ($1, 'SUCCESS', $2, $3, '\\x7b7d', 'GAVE_UP') RETURNING delivery_id",
        row["pay_id"],
        row["callback_url"],
        KEY_ID,
    )
    for error in (
        "ClientConnectorError: Cannot connect to host 10.0.0.7:5432 ssl:default "
        "[Connect call failed ('10.0.0.7', 5432)]",
        "timed out",
        None,
    ):
        await env.pool.execute(
            "INSERT INTO callback_attempts (delivery_id, status_code, error, duration_ms) "
            "VALUES ($1, $2, $3, 1)",
            delivery_id,
            None if error else 500,
            error,
        )
    shown = await deliveries_of(env.pool, row["pay_id"])
    assert [a["error"] for a in shown[0]["attempts"]] == ["failed", "timed out", None]
    assert [a["statusCode"] for a in shown[0]["attempts"]] == [None, None, 500]
