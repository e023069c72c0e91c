"""The gateway's connections: how long a client may take, how many it may hold, and TLS.

uvicorn closes an idle keep-alive connection, but it never times out a connection that sends
nothing, or headers that never end (a slowloris), or a body that trickles: each holds a file
descriptor and a slot for ever, and enough of them deny service to everyone. ``GuardedProtocol``
is uvicorn's httptools protocol with three more rules, all enforced in the event loop before any
application code runs: a connection beyond ``max_connections`` (or beyond
``max_connections_per_address`` from one source address) is closed as it is accepted; a
request's headers must be complete ``header_timeout_s`` after its first byte (or after the
connection opened); its body must be complete ``body_timeout_s`` after its headers. Whatever
breaks a rule is closed without an answer: an attacker learns nothing and holds nothing.

Over TLS, the client certificate's SHA-256 fingerprint is put in the request's scope
(``scope["extensions"]["tls"]["client_cert_sha256"]``), since uvicorn does not pass the peer
certificate on; the authenticator binds it to the key that signed the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's own suites are all modern).
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 5.0
    body_timeout_s: float = 15.0
    max_connections: int = 4096
    # One source address may hold this many: a single host cannot take every slot.
    max_connections_per_address: int = 256


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""

    class _Bound(GuardedProtocol):
        LIMITS = limits

    return _Bound


class GuardedProtocol(HttpToolsProtocol):
    LIMITS = ConnectionLimits()

    # Open connections per source address, in this process (one event loop: no lock needed).
    _per_address: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._tls: dict[str, Any] | None = None
        self._address: str | None = None
        # uvicorn's own limit counts open connections as well as requests in progress, so idle
        # connections would turn requests away; here it counts requests in progress only.
        self._request_limit = self.limit_concurrency
        self.limit_concurrency = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        self._address = address
        self._per_address[address] += 1
        if (
            len(self.connections) > self.LIMITS.max_connections
            or self._per_address[address] > self.LIMITS.max_connections_per_address
        ):
            transport.close()
            return
        self._tls = _tls_extension(transport)
        # A connection that never sends a byte is held only as long as a slow header.
        self._arm(self.LIMITS.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._per_address[self._address] -= 1
            if self._per_address[self._address] <= 0:
                del self._per_address[self._address]
            self._address = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]
        self._arm(self.LIMITS.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._arm(self.LIMITS.body_timeout_s)
        if self._request_limit is not None and len(self.tasks) >= self._request_limit:
            app, self.app = self.app, service_unavailable
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def _tls_extension(transport: asyncio.Transport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "client_cert_sha256": hashlib.sha256(der).hexdigest() if der else None,
        "tls_version": ssl_object.version(),
    }


def client_cert_sha256(scope: dict[str, Any] | Any) -> str | None:
    """The fingerprint of the client certificate the request came with, if any."""
    tls = scope.get("extensions", {}).get("tls") or {}
    value = tls.get("client_cert_sha256")
    return value if isinstance(value, str) else None


def tls_context_factory(
    client_ca: str | None,
) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """uvicorn's context with TLS 1.2 as the floor, modern suites only, no compression or
    renegotiation, and (with ``client_ca``) client certificates asked for and verified. They
    are optional at the handshake, so that keys not bound to a certificate still work; the
    authenticator refuses a bound key's request that came without its certificate."""

    def factory(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(MODERN_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if client_ca:
            context.load_verify_locations(cafile=client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    return factory
