"""The gateway's connections against a real gateway process: slow and idle clients are cut off,
connections are capped, and TLS is terminated with TLS 1.2+ and modern suites only."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from support.api import signed_get
from support.certs import CertAuthority, Issued
from support.env import ModuleEnv, new_bank_keys
from support.processes import Service, gateway

from fundhub.bank_simulator.notifications import TransferSpec, build_notification

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 20
PER_ADDRESS = 10


def _gateway(env: ModuleEnv, **extra: str) -> Service:
    return gateway(
        env,
        FUNDHUB_GATEWAY_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        FUNDHUB_GATEWAY_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        FUNDHUB_GATEWAY_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        FUNDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
        **extra,
    )


@pytest.fixture(scope="module")
async def plain(env: ModuleEnv) -> AsyncIterator[Service]:
    gw = _gateway(env)
    gw.start()
    try:
        await gw.wait_ready()
        yield gw
    finally:
        gw.stop()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection from ``source``: every 127.x.y.z is this machine, as distinct clients."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _seconds_until_closed(sock: socket.socket, limit_s: float = 8.0) -> float:
    """How long the server kept the connection open (``limit_s`` when it never closed it)."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return limit_s
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def test_silent_connection_is_closed(plain: Service) -> None:
    with _connect(plain.port) as sock:
        held = await asyncio.to_thread(_seconds_until_closed, sock)
    assert held < HEADER_TIMEOUT_S + 1.0


async def test_slowloris_headers_are_cut_off(plain: Service) -> None:
    with _connect(plain.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

        def trickle() -> float:
            started = time.monotonic()
            try:
                for _ in range(40):  # one byte every 0.2 s: never the end of the headers
                    sock.sendall(b"a")
                    time.sleep(0.2)
            except OSError:
                return time.monotonic() - started
            return 8.0

        held = await asyncio.to_thread(trickle)
    assert held < HEADER_TIMEOUT_S + 1.0


async def test_trickled_body_is_cut_off(plain: Service) -> None:
    with _connect(plain.port) as sock:
        sock.sendall(
            b"POST /callbacks/bank HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        held = await asyncio.to_thread(_seconds_until_closed, sock)
    assert held < BODY_TIMEOUT_S + 1.0


async def test_keepalive_request_after_timeout_window_still_served(plain: Service) -> None:
    """The header deadline is per request: a client that is prompt is never cut off."""
    async with httpx.AsyncClient(base_url=plain.url) as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
            await asyncio.sleep(HEADER_TIMEOUT_S / 2)


async def test_connections_beyond_the_cap_are_closed_at_once(plain: Service) -> None:
    sources = ("127.0.0.2", "127.0.0.3")
    held = [_connect(plain.port, s) for s in sources for _ in range(MAX_CONNECTIONS // 2)]
    try:
        await asyncio.sleep(0.2)
        with _connect(plain.port, "127.0.0.4") as extra:
            closed_after = await asyncio.to_thread(_seconds_until_closed, extra, 3.0)
        assert closed_after < 0.5
    finally:
        for sock in held:
            sock.close()
    # Once they are gone (or timed out), the gateway serves again.
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=plain.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_one_address_cannot_take_every_slot(plain: Service) -> None:
    held = [_connect(plain.port, "127.0.0.5") for _ in range(PER_ADDRESS)]
    try:
        await asyncio.sleep(0.2)
        with _connect(plain.port, "127.0.0.5") as extra:
            closed_after = await asyncio.to_thread(_seconds_until_closed, extra, 3.0)
        assert closed_after < 0.5
        async with httpx.AsyncClient(base_url=plain.url) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        for sock in held:
            sock.close()


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(env: ModuleEnv) -> CertAuthority:
    directory = env.tmp / "pki"
    directory.mkdir(exist_ok=True)
    return CertAuthority(directory)


@pytest.fixture(scope="module")
async def tls_gateway(env: ModuleEnv, pki: CertAuthority) -> AsyncIterator[Service]:
    server = pki.issue("gateway", server=True)
    gw = _gateway(
        env,
        FUNDHUB_GATEWAY_TLS_CERTFILE=str(server.cert),
        FUNDHUB_GATEWAY_TLS_KEYFILE=str(server.key),
        FUNDHUB_GATEWAY_TLS_CLIENT_CA=str(pki.cert_path),
    )
    gw.start()
    try:
        await wait_tls_ready(gw, pki)
        yield gw
    finally:
        gw.stop()


async def wait_tls_ready(gw: Service, pki: CertAuthority, timeout_s: float = 60.0) -> None:
    context = ssl.create_default_context(cafile=str(pki.cert_path))
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(verify=context) as client:
        while time.monotonic() < deadline:
            if gw.proc is not None and gw.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {gw.tail()}")
            try:
                if (await client.get(f"https://127.0.0.1:{gw.port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"gateway not ready over TLS: {gw.tail()}")


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


def _client_context(pki: CertAuthority) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.cert_path))
    return context


async def test_tls_modern_handshake(tls_gateway: Service, pki: CertAuthority) -> None:
    version = await asyncio.to_thread(_handshake, tls_gateway.port, _client_context(pki))
    assert version in ("TLSv1.2", "TLSv1.3")
    tls12 = _client_context(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await asyncio.to_thread(_handshake, tls_gateway.port, tls12) == "TLSv1.2"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_1_1_is_refused(tls_gateway: Service, pki: CertAuthority) -> None:
    old = _client_context(pki)
    old.set_ciphers("ALL:@SECLEVEL=0")  # let our side offer it; the gateway must refuse
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, tls_gateway.port, old)


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"])
async def test_weak_cipher_is_refused(
    tls_gateway: Service, pki: CertAuthority, cipher: str
) -> None:
    weak = _client_context(pki)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers(f"{cipher}:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, tls_gateway.port, weak)


async def test_plain_http_on_the_tls_port_gets_nothing(tls_gateway: Service) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://127.0.0.1:{tls_gateway.port}/healthz")


# --- keys bound to a client certificate or to address ranges ----------------------------------

BALANCE = "/v1/accounts/6222000555001/balance"


def _mtls_client(gw: Service, pki: CertAuthority, cert: Issued | None) -> httpx.AsyncClient:
    context = _client_context(pki)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return httpx.AsyncClient(base_url=f"https://127.0.0.1:{gw.port}", verify=context)


async def _authenticated(client: httpx.AsyncClient, key_id: str, secret: str) -> bool:
    """Whether the gateway took the request as the key's (a balance or its 404, not a 401)."""
    response = await signed_get(client, key_id, secret, BALANCE)
    if response.status_code == 401:
        assert response.json()["errorCode"] == "E002"
        return False
    assert response.status_code in (200, 404), response.text
    return True


async def test_key_bound_to_client_certificate(
    env: ModuleEnv, tls_gateway: Service, pki: CertAuthority
) -> None:
    mine, other = pki.issue("client-mine", server=False), pki.issue("client-other", server=False)
    key_id, secret = env.create_api_key("balance:read", "*")
    # Bound before its first use: the gateway caches keys for a while.
    env.cli("api-key", "restrict", key_id, "--client-cert", str(mine.cert))
    free_id, free_secret = env.create_api_key("balance:read", "*")

    async with _mtls_client(tls_gateway, pki, mine) as client:
        assert await _authenticated(client, key_id, secret)
        assert await _authenticated(client, free_id, free_secret)
    async with _mtls_client(tls_gateway, pki, other) as client:
        assert not await _authenticated(client, key_id, secret)
    async with _mtls_client(tls_gateway, pki, None) as client:
        assert not await _authenticated(client, key_id, secret)
        # A key bound to nothing still works without a client certificate.
        assert await _authenticated(client, free_id, free_secret)


async def test_client_certificate_from_another_ca_is_refused(
    env: ModuleEnv, tls_gateway: Service, pki: CertAuthority
) -> None:
    directory = env.tmp / "rogue-pki"
    directory.mkdir(exist_ok=True)
    rogue = CertAuthority(directory, "rogue CA").issue("client-rogue", server=False)
    async with _mtls_client(tls_gateway, pki, rogue) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get("/healthz")


async def test_key_allowlist(env: ModuleEnv, plain: Service) -> None:
    outside_id, outside_secret = env.create_api_key("balance:read", "*")
    env.cli("api-key", "restrict", outside_id, "--allow-cidrs", "10.0.0.0/8,2001:db8::/32")
    inside_id, inside_secret = env.create_api_key("balance:read", "*")
    env.cli("api-key", "restrict", inside_id, "--allow-cidrs", "10.0.0.0/8,127.0.0.0/8")
    async with httpx.AsyncClient(base_url=plain.url) as client:
        assert not await _authenticated(client, outside_id, outside_secret)
        assert await _authenticated(client, inside_id, inside_secret)


async def test_bank_app_allowlist(env: ModuleEnv, plain: Service) -> None:
    keys = new_bank_keys()
    pem = env.tmp / "allowlist-bank.pem"
    pem.write_text(keys.public_pem)
    for app_id, ranges in (("fenced-app", "10.0.0.0/8"), ("local-app", "127.0.0.1/32")):
        env.cli("bank-app", "add", "--app-id", app_id, "--public-key", str(pem))
        env.cli("bank-app", "restrict", "--app-id", app_id, "--allow-cidrs", ranges)
    async with httpx.AsyncClient(base_url=plain.url) as client:
        for app_id, record, expected in (
            ("fenced-app", "fence-1", 401),
            ("local-app", "fence-2", 200),
        ):
            notice = build_notification(
                TransferSpec(record_id=record, in_acct_no="6222000555002", trans_amount=100),
                app_id,
                keys.private_pem,
            )
            response = await client.post("/callbacks/bank", json=notice)
            assert response.status_code == expected, response.text
