"""Addresses from settings (Kafka bootstrap list, Postgres DSN) and a cheap reachability probe."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


@dataclass(frozen=True)
class PostgresTarget:
    """What a DSN names; ``address`` is None for a unix-socket DSN (never managed locally)."""

    address: HostPort | None
    user: str
    database: str


def parse_bootstrap(bootstrap: str) -> list[HostPort]:
    """``"h1:9092,h2:9092"`` -> host/port pairs (the port defaults to 9092)."""
    result: list[HostPort] = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "9092"
        result.append(HostPort(host.strip("[]"), int(port)))
    if not result:
        raise ValueError("empty Kafka bootstrap list")
    return result


def parse_dsn(dsn: str) -> PostgresTarget:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("the database URL must start with postgresql://")
    user = unquote(parts.username or "postgres")
    database = unquote(parts.path.lstrip("/")) or user
    host = parts.hostname
    address = None if not host or host.startswith("/") else HostPort(host, parts.port or 5432)
    return PostgresTarget(address=address, user=user, database=database)


def same_address(a: HostPort, b: HostPort) -> bool:
    """Equal ports and both loopback, or the very same host."""
    if a.port != b.port:
        return False
    return a.host == b.host or (a.is_loopback and b.is_loopback)


def tcp_reachable(address: HostPort, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return True
    except OSError:
        return False
