"""Address allowlists and key bindings: the pure rules behind README "Transport"."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from support.certs import CertAuthority

from fundhub.access.binding import (
    InvalidBinding,
    certificate_fingerprint,
    parse_fingerprint,
    transport_refusal,
)
from fundhub.access.keys import ApiKey
from fundhub.common.cidrs import InvalidCidr, address_allowed, as_networks, parse_cidrs


def test_parse_cidrs() -> None:
    assert parse_cidrs(None) == [] and parse_cidrs(" , ") == []
    nets = parse_cidrs("10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,10.0.0.0/8")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]
    for bad in ("10.0.0.1/8", "300.0.0.0/8", "example.com", "10.0.0.0/33"):
        with pytest.raises(InvalidCidr):
            parse_cidrs(bad)


def test_address_allowed() -> None:
    nets = parse_cidrs("10.0.0.0/8,2001:db8::/32")
    assert address_allowed([], "203.0.113.9")  # no list: no restriction
    assert address_allowed(nets, "10.1.2.3")
    assert address_allowed(nets, "2001:db8::1")
    assert address_allowed(nets, "::ffff:10.9.9.9")  # IPv4-mapped on a dual-stack socket
    assert not address_allowed(nets, "127.0.0.1")
    assert not address_allowed(nets, "11.0.0.1")
    assert not address_allowed(nets, None)
    assert not address_allowed(nets, "not-an-address")


def test_as_networks_takes_asyncpg_values() -> None:
    values = [ipaddress.ip_network("10.0.0.0/8"), "127.0.0.1/32"]
    assert [str(n) for n in as_networks(values)] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_parse_fingerprint() -> None:
    hexed = "AB" * 32
    assert parse_fingerprint(hexed) == "ab" * 32
    assert parse_fingerprint(":".join(["AB"] * 32)) == "ab" * 32
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(InvalidBinding):
            parse_fingerprint(bad)


def test_certificate_fingerprint_is_that_of_the_der(tmp_path: Path) -> None:
    issued = CertAuthority(tmp_path).issue("client", server=False)
    assert certificate_fingerprint(issued.cert.read_bytes()) == issued.sha256
    with pytest.raises(InvalidBinding):
        certificate_fingerprint(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def _key(cert: str | None = None, cidrs: str = "") -> ApiKey:
    return ApiKey(
        "ak_x",
        "s" * 32,
        frozenset({"balance:read"}),
        frozenset({"*"}),
        client_cert_sha256=cert,
        allowed_cidrs=tuple(parse_cidrs(cidrs)),
    )


def test_transport_refusal() -> None:
    bound = "a" * 64
    assert transport_refusal(_key(), "203.0.113.9", None) is None
    assert transport_refusal(_key(bound), "127.0.0.1", bound) is None
    assert transport_refusal(_key(bound), "127.0.0.1", None) is not None
    assert transport_refusal(_key(bound), "127.0.0.1", "b" * 64) is not None
    assert transport_refusal(_key(cidrs="10.0.0.0/8"), "10.0.0.1", None) is None
    assert transport_refusal(_key(cidrs="10.0.0.0/8"), "127.0.0.1", None) is not None
    assert transport_refusal(_key(bound, "10.0.0.0/8"), "127.0.0.1", bound) is not None
