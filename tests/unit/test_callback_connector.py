"""The sender's connector refuses internal addresses after DNS resolution, for names and literal
addresses alike, and lets an operator's allowed range through. A real local receiver counts what
arrives; the "public" names are resolved by a resolver the test controls (nothing leaves this
machine)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from support.receivers import serving

from fundhub.common.config import Settings
from fundhub.webhooks.connector import AddressNotAllowed, guarded_connector, refused_by_rule
from fundhub.webhooks.destinations import CallbackAddresses
from fundhub.webhooks.policy import ERROR_INVALID_URL, ERROR_NOT_ALLOWED, public_error
from fundhub.webhooks.sender import _public_error

PUBLIC_ONLY = CallbackAddresses()
ALLOW_LOOPBACK = CallbackAddresses.allowing(["127.0.0.1/32"])


class Hosts(AbstractResolver):
    """A resolver with a fixed table: the test's own DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


class Counting:
    def __init__(self) -> None:
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Counting, int]]:
    counting = Counting()
    app = web.Application()
    app.router.add_post("/cb", counting.handle)
    async with serving(app) as url:
        yield counting, int(url.rsplit(":", 1)[1])


async def post(url: str, rule: CallbackAddresses, resolver: AbstractResolver | None = None) -> int:
    """POST as the sender does: its connector, no redirects, no proxy from the environment."""
    connector = guarded_connector(rule, resolver)
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout) as session,
        session.post(url, data=b"{}", allow_redirects=False) as response,
    ):
        return response.status


async def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    receiver: tuple[Counting, int],
) -> None:
    counting, port = receiver
    hosts = Hosts({"callbacks.example.com": ["127.0.0.1"]})
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await post(f"http://callbacks.example.com:{port}/cb", PUBLIC_ONLY, hosts)
    assert refused_by_rule(caught.value)
    assert _public_error(caught.value) == ERROR_NOT_ALLOWED
    assert hosts.asked == ["callbacks.example.com"]
    assert counting.hits == 0


async def test_the_same_name_is_delivered_when_the_operator_allows_loopback(
    receiver: tuple[Counting, int],
) -> None:
    counting, port = receiver
    hosts = Hosts({"callbacks.example.com": ["127.0.0.1"]})
    assert await post(f"http://callbacks.example.com:{port}/cb", ALLOW_LOOPBACK, hosts) == 200
    assert counting.hits == 1


async def test_a_name_with_public_and_internal_addresses_uses_only_the_permitted_ones(
    receiver: tuple[Counting, int],
) -> None:
    counting, port = receiver
    # 127.0.0.1 is allowed, 10.0.0.1 is not: only the allowed one may be connected to.
    hosts = Hosts({"mixed.example.com": ["10.0.0.1", "127.0.0.1"]})
    assert await post(f"http://mixed.example.com:{port}/cb", ALLOW_LOOPBACK, hosts) == 200
    assert counting.hits == 1


@pytest.mark.parametrize(
    ("host", "public"),
    [
        ("127.0.0.1", ERROR_NOT_ALLOWED),
        ("[::ffff:127.0.0.1]", ERROR_NOT_ALLOWED),
        ("[::1]", ERROR_NOT_ALLOWED),
        ("localhost", ERROR_NOT_ALLOWED),
        ("0x7f000001", ERROR_NOT_ALLOWED),
        ("2130706433", ERROR_INVALID_URL),  # aiohttp refuses the legacy form itself
    ],
)
async def test_literal_and_system_resolved_loopback_hosts_are_refused(
    receiver: tuple[Counting, int], host: str, public: str
) -> None:
    """Literal addresses skip aiohttp's resolver: the socket factory refuses them; names
    (``localhost`` from /etc/hosts, ``0x7f000001`` that inet_aton reads) go through the
    system resolver and are refused after it."""
    counting, port = receiver
    with pytest.raises(aiohttp.ClientError) as caught:
        await post(f"http://{host}:{port}/cb", PUBLIC_ONLY)
    assert _public_error(caught.value) == public, repr(caught.value)
    assert counting.hits == 0


async def test_a_literal_loopback_address_is_delivered_when_allowed(
    receiver: tuple[Counting, int],
) -> None:
    counting, port = receiver
    assert await post(f"http://127.0.0.1:{port}/cb", ALLOW_LOOPBACK) == 200
    assert await post(f"http://localhost:{port}/cb", ALLOW_LOOPBACK) == 200
    assert counting.hits == 2


def test_the_error_names_the_host_for_operators_only() -> None:
    exc = AddressNotAllowed("10.0.0.1")
    assert "10.0.0.1" in str(exc)  # in the log
    assert public_error(str(exc)) == "failed"  # never as such in the API
    assert public_error(ERROR_NOT_ALLOWED) == ERROR_NOT_ALLOWED


def test_the_setting_is_a_comma_separated_list_of_cidrs() -> None:
    settings = Settings(callback_allow_cidrs="127.0.0.1/32, ::1/128")  # type: ignore[arg-type]
    rule = CallbackAddresses(settings.callback_allow_cidrs)
    assert rule.permits("127.0.0.1") and rule.permits("::1")
    assert Settings.model_fields["callback_allow_cidrs"].default == ()  # public only by default
