"""The whole depository platform as real processes, for the scenario and refusal tests: the
gateway, notify-ingest, payment-worker and the callback dispatcher, with the bank simulator
(its depository: members, orders, splits; its payouts) and the channel simulator (WeChat Pay
and Alipay) on the other side; a tenant's API key, the channel apps trusted through the
operator CLI (``fundhub channel add``), and a receiver for every signed callback.

Keys are TEST keys made per run. Requests are signed as a platform signs them and sent with
aiohttp (the load of thousands of orders costs the test's process less so than with httpx).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
from aiohttp import web
from multidict import CIMultiDict

from fundhub.bank_simulator.sender import callback_url
from fundhub.channel_simulator.keys import own_keys
from fundhub.channel_simulator.main import write_keys
from support.api import signed_headers
from support.channels import MerchantKeys, cli_add_args, serve_on_simulator
from support.env import ModuleEnv
from support.processes import (
    Service,
    WithArguments,
    callback_dispatcher,
    channel_simulator,
    free_port,
    gateway,
    notify_ingest,
)
from support.receivers import ALLOW_LOCAL_RECEIVERS, SignedCallbacks, serving

SCOPES = "merchants:write,merchants:read,orders:write,orders:read,balance:read"


@dataclass(frozen=True)
class Tenant:
    key_id: str
    secret: str
    webhook_secret: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def code(self) -> str | None:
        """The refusal's ``errorCode`` (None for a success)."""
        if isinstance(self.body, dict):
            code: str | None = self.body.get("errorCode")
            return code
        return None


def callback_key(body: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a callback is about: (kind, subject, state). Each is delivered once."""
    if "eventId" in body:  # a merchant's event, numbered per merchant
        return ("merchant", f"{body['merchantId']}:{body['eventId']}", str(body["event"]))
    for kind, subject in (
        ("settlement", "settlementId"),
        ("refund", "refundId"),
        ("withdrawal", "payId"),
        ("order", "orderId"),
    ):
        if subject in body:
            return (kind, str(body[subject]), str(body["state"]))
    raise AssertionError(f"a callback about nothing known: {body}")


@dataclass
class Callbacks(SignedCallbacks):
    """The tenant's notifyUrl: every callback it is sent, how often, whether signed right."""

    seen: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    bodies: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def took(self, body: dict[str, Any]) -> None:
        key = callback_key(body)
        self.seen[key] += 1
        self.bodies[key] = body

    def of(self, kind: str) -> dict[tuple[str, str], int]:
        """(subject, state) -> deliveries, of one kind."""
        return {(s, st): n for (k, s, st), n in self.seen.items() if k == kind}


@dataclass
class Platform:
    env: ModuleEnv
    gateway: Service
    ingest: Service
    worker: Service
    dispatcher: Service
    bank: Service
    channels: Service
    tenant: Tenant
    merchant_keys: MerchantKeys
    callbacks: Callbacks
    notify_url: str
    http: aiohttp.ClientSession
    keys_dir: Path

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        tenant: Tenant | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> Answer:
        """A request signed as the tenant's platform signs it."""
        who = tenant or self.tenant
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = signed_headers(who.key_id, who.secret, method, path, query, raw)
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = f"{self.gateway.url}{path}" + (f"?{urlencode(query)}" if query else "")
        async with self.http.request(method, url, data=raw, headers=headers) as response:
            text = await response.read()
            try:
                parsed: Any = json.loads(text) if text else None
            except ValueError:
                parsed = text.decode(errors="replace")
            return Answer(response.status, parsed, CIMultiDict(response.headers))

    async def sim(self, service: Service, method: str, path: str, **kwargs: Any) -> Any:
        """A simulator's control API; fails the test on anything but 200."""
        async with self.http.request(method, f"{service.url}{path}", **kwargs) as response:
            text = await response.text()
            assert response.status == 200, f"{method} {path}: {response.status} {text}"
            return json.loads(text)

    def services(self) -> list[Service]:
        return [self.gateway, self.ingest, self.worker, self.dispatcher, self.bank, self.channels]

    async def restart(self, service: Service) -> None:
        """SIGKILL (no shutdown hook runs, as a crashed host), then start it again."""
        service.kill()
        service.start()
        await service.wait_ready()


def bank_simulator(env: ModuleEnv, gateway_url: str, *extra: str) -> Service:
    """The bank: quick reviews (100-400 ms), quick retries of its notices (0.5 s apart)."""
    port = free_port()
    key_file = env.tmp / f"bank-private-{port}.pem"
    key_file.write_text(env.bank.private_pem)
    return WithArguments(env, "bank-simulator", "fundhub-bank-simulator", port, [
        "--port", str(port), "--gateway-url", gateway_url, "--app-id", env.app_id,
        "--private-key-file", str(key_file), "--retries", "5", "--retry-interval", "0.5",
        "--depository-review-delay", "100,400", "--payout-callback-delay", "20,200", *extra,
    ])  # fmt: skip


def make_tenant(env: ModuleEnv, name: str, scopes: str = SCOPES, accounts: str = "*") -> Tenant:
    """A TEST key made with the operator CLI."""
    created = json.loads(
        env.cli("api-key", "create", "--name", name, "--scopes", scopes, "--accounts", accounts,
                "--json")
    )  # fmt: skip
    return Tenant(created["keyId"], created["secret"], created["webhookSecret"])


@asynccontextmanager
async def depository_platform(
    env: ModuleEnv, worker_env: Mapping[str, str] | None = None, *channel_args: str
) -> AsyncIterator[Platform]:
    """Every process started and ready, the channels trusted, the tenant's key made; stopped
    on the way out. ``worker_env``: payment-worker's settings beyond the quick defaults;
    ``channel_args``: the channel simulator's flags beyond its keys.

    The operator's commands (each a process of its own, seconds to start on a loaded box) run
    while the services start: the simulator's public keys are known from its key files."""
    keys_dir = env.tmp / "channel-sim"
    write_keys(keys_dir)  # the simulator's own keys, held by the test too (to forge with)
    sim_keys = own_keys(keys_dir).public()
    channels = channel_simulator(
        env, "--keys-dir", str(keys_dir), "--time-factor", "0.001", *channel_args
    )
    gw = gateway(
        env,
        FUNDHUB_WECHATPAY_BASE_URL=channels.url,
        FUNDHUB_ALIPAY_GATEWAY_URL=f"{channels.url}/gateway.do",
        **ALLOW_LOCAL_RECEIVERS,
    )
    bank = bank_simulator(env, gw.url)
    gw.extra_env["FUNDHUB_BANK_BASE_URL"] = bank.url
    worker_port = free_port()
    worker = Service(
        env, "payment-worker", "fundhub-payment-worker", worker_port,
        FUNDHUB_PAYMENT_WORKER_PORT=str(worker_port),
        FUNDHUB_BANK_BASE_URL=bank.url, FUNDHUB_BANK_TIMEOUT_S="2",
        FUNDHUB_PAYOUT_NOTIFY_URL=callback_url(gw.url),
        FUNDHUB_PAYOUT_POLL_INTERVAL_S="0.5", FUNDHUB_PAYOUT_POLL_BASE_S="1",
        FUNDHUB_PAYOUT_POLL_MAX_S="3", FUNDHUB_MERCHANT_POLL_BASE_S="2",
        FUNDHUB_WECHATPAY_BASE_URL=channels.url,
        FUNDHUB_ALIPAY_GATEWAY_URL=f"{channels.url}/gateway.do",
        FUNDHUB_CHANNEL_NOTIFY_BASE_URL=gw.url,
        FUNDHUB_REFUND_POLL_BASE_S="1", FUNDHUB_REFUND_POLL_MAX_S="3",
        FUNDHUB_SETTLEMENT_INTERVAL_S="0.5", FUNDHUB_SETTLEMENT_POLL_BASE_S="1",
        FUNDHUB_SETTLEMENT_POLL_MAX_S="3",
        **(worker_env or {}),
    )  # fmt: skip
    dispatcher = callback_dispatcher(
        env, backoff_base_s=0.2, backoff_max_s=1.0, **ALLOW_LOCAL_RECEIVERS
    )
    ingest = notify_ingest(env)
    services = [channels, bank, gw, ingest, worker, dispatcher]
    merchant_keys = MerchantKeys()
    callbacks = Callbacks()
    app = web.Application()
    app.router.add_post("/callbacks", callbacks.handle)
    async with AsyncExitStack() as stack:
        stack.callback(_stop_all, services)
        for service in services:
            service.start()
        operator = asyncio.gather(
            asyncio.to_thread(env.register_bank_app),
            *(asyncio.to_thread(env.cli, *args)
              for args in cli_add_args(env.tmp, merchant_keys, sim_keys)),
            asyncio.to_thread(make_tenant, env, "platform"),
        )  # fmt: skip
        # Idle connections are dropped well before the gateway's own keep-alive (5 s) closes
        # them: reusing one the server is closing fails the request ("closing transport").
        connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=2)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
        )
        receiver_url = await stack.enter_async_context(serving(app))
        await asyncio.gather(*(s.wait_ready() for s in services))
        async with httpx.AsyncClient(timeout=30) as client:
            assert await serve_on_simulator(client, channels.url, merchant_keys) == sim_keys
        *_, tenant = await operator
        callbacks.secret = tenant.webhook_secret
        yield Platform(
            env=env,
            gateway=gw,
            ingest=ingest,
            worker=worker,
            dispatcher=dispatcher,
            bank=bank,
            channels=channels,
            tenant=tenant,
            merchant_keys=merchant_keys,
            callbacks=callbacks,
            notify_url=f"{receiver_url}/callbacks",
            http=http,
            keys_dir=keys_dir,
        )


def _stop_all(services: list[Service]) -> None:
    """SIGTERM to every service at once, then wait for each (SIGKILL past its grace)."""
    for service in services:
        service.terminate()
    for service in services:
        service.stop()
