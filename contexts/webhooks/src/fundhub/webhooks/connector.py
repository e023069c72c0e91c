"""The callback sender's connector: it connects to permitted addresses only.

The check sits where aiohttp turns a URL into sockets, so no path can skip it: the resolver
drops every resolved address that ``destinations.CallbackAddresses`` refuses (a public-looking
name that resolves to 127.0.0.1 is refused, and a name with public and private addresses uses
the public ones), and the socket factory checks the exact address of every socket about to
connect, which also covers literal IP hosts (aiohttp does not resolve those). The address
checked is the one connected to, so a DNS answer that changes between check and connect
(rebinding) changes nothing. Redirects are not followed by the sender, and the session reads no
proxy settings from the environment.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from fundhub.webhooks.destinations import CallbackAddresses


class AddressNotAllowed(OSError):
    """A callback destination that resolves (or is) an address the rule refuses."""

    def __init__(self, host: str) -> None:
        # errno and text both set: aiohttp shows an OSError's strerror in its own message.
        super().__init__(errno.EACCES, f"callback address not allowed: {host}")
        self.host = host


class PermittedAddressResolver(AbstractResolver):
    """Resolves with ``inner`` (the system's resolver by default), keeps permitted addresses."""

    def __init__(self, rule: CallbackAddresses, inner: AbstractResolver | None = None) -> None:
        self._rule = rule
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        permitted = [entry for entry in found if self._rule.permits(entry["host"])]
        if not permitted:
            raise AddressNotAllowed(host)
        return permitted

    async def close(self) -> None:
        await self._inner.close()


def _socket_factory(rule: CallbackAddresses) -> Any:
    def create(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not rule.permits(str(sockaddr[0])):
            raise AddressNotAllowed(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    return create


def guarded_connector(
    rule: CallbackAddresses, resolver: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """A TCPConnector that reaches only what ``rule`` permits; ``resolver`` for tests."""
    return aiohttp.TCPConnector(
        resolver=PermittedAddressResolver(rule, resolver),
        socket_factory=_socket_factory(rule),
    )


def refused_by_rule(exc: BaseException) -> bool:
    """Was this client error (or what it wraps) a refusal of the destination's address?"""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, AddressNotAllowed):
            return True
        wrapped = getattr(seen, "os_error", None)
        if isinstance(wrapped, AddressNotAllowed):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
