"""The running stack for end-to-end tests: gateway and notify-ingest as real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx
import pytest
from support.env import ModuleEnv
from support.processes import Service, gateway, notify_ingest

from fundhub.bank_simulator.sender import BankSender, callback_url


@dataclass
class Stack:
    env: ModuleEnv
    gateway: Service
    ingest: Service
    http: httpx.AsyncClient
    bank: BankSender

    async def post(self, params: dict[str, str]) -> httpx.Response:
        return await self.http.post("/callbacks/bank", json=params)


async def wait_until(
    probe: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, interval_s: float = 0.05
) -> float:
    """Seconds it took for ``probe`` to hold; fails the test past the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await probe():
            return time.monotonic() - started
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


@pytest.fixture(scope="module")
async def stack(env: ModuleEnv) -> AsyncIterator[Stack]:
    env.register_bank_app()
    gw, ingest = gateway(env), notify_ingest(env)
    gw.start()
    ingest.start()
    try:
        await asyncio.gather(gw.wait_ready(), ingest.wait_ready())
        limits = httpx.Limits(
            max_connections=100, max_keepalive_connections=100, keepalive_expiry=2.0
        )
        connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0)
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=30, limits=limits) as http,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            # The bank's retry policy, 3 retries, but 0.5 s apart instead of 3 minutes.
            sender = BankSender(session, callback_url(gw.url), retries=3, retry_interval_s=0.5)
            yield Stack(env=env, gateway=gw, ingest=ingest, http=http, bank=sender)
    finally:
        ingest.stop()
        gw.stop()
