"""Where a callback may go (webhooks.destinations): every internal address in every notation is
refused, public ones pass, and an operator's allowed range lets exactly that range through."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest

from fundhub.webhooks.destinations import (
    REFUSED_V4,
    REFUSED_V6,
    CallbackAddresses,
    InvalidHost,
    is_internal,
    is_local_name,
    normalise_host,
)

PUBLIC_ONLY = CallbackAddresses()
ALLOW_LOOPBACK = CallbackAddresses.allowing(["127.0.0.1/32"])

INTERNAL_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "169.254.169.254",  # cloud metadata
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",
    "fc00::1",  # unique local
    "fd12:3456:789a::1",
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",  # multicast
    "100::1",
]
PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",
    "172.32.0.0",
    "11.0.0.1",
    "223.255.255.255",
    "::ffff:8.8.8.8",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", INTERNAL_ADDRESSES)
def test_internal_addresses_are_refused(address: str) -> None:
    assert not PUBLIC_ONLY.permits(address)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_permitted(address: str) -> None:
    assert PUBLIC_ONLY.permits(address)
    assert not is_internal(ip_address(address))


@pytest.mark.parametrize("network", [*REFUSED_V4, *REFUSED_V6], ids=str)
def test_every_refused_range_is_refused_at_both_ends(network: IPv4Network | IPv6Network) -> None:
    assert not PUBLIC_ONLY.permits(network.network_address)
    assert not PUBLIC_ONLY.permits(network.broadcast_address)


@pytest.mark.parametrize("text", ["", "not-an-address", "127.0.0.1:80", "1.2.3", "::g"])
def test_unparseable_addresses_are_refused(text: str) -> None:
    assert not PUBLIC_ONLY.permits(text)


def test_an_allowed_range_lets_exactly_that_range_through() -> None:
    assert ALLOW_LOOPBACK.permits("127.0.0.1")
    assert ALLOW_LOOPBACK.permits("::ffff:127.0.0.1")  # the same address, mapped
    assert not ALLOW_LOOPBACK.permits("127.0.0.2")
    assert not ALLOW_LOOPBACK.permits("::1")
    assert not ALLOW_LOOPBACK.permits("10.0.0.1")
    assert ALLOW_LOOPBACK.permits("8.8.8.8")  # allowing adds, never takes away
    private = CallbackAddresses.allowing(["10.0.0.0/8", "fd00::/8"])
    assert private.permits("10.1.2.3") and private.permits("fd00::1")
    assert not private.permits("192.168.0.1")


# --- host normalisation: what a resolver would read the URL's host as ------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("0x7f000001", "127.0.0.1"),  # one hex number
        ("0X7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # one decimal number
        ("017700000001", "127.0.0.1"),  # one octal number
        ("0177.0.0.1", "127.0.0.1"),  # octal part
        ("0x7f.0.0.1", "127.0.0.1"),  # hex part
        ("0x7f.1", "127.0.0.1"),  # two parts: the last fills three bytes
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("192.168.0x1.01", "192.168.1.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),  # mapped: the IPv4 address itself
        ("::FFFF:7F00:1", "127.0.0.1"),
        ("fe80::1%25eth0", "fe80::1"),  # a URL's zone index, percent-encoded
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_hosts_are_read_as_their_address(host: str, address: str) -> None:
    assert normalise_host(host) == ip_address(address)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("erp.example", "erp.example"),
        ("a-b.c_d.example", "a-b.c_d.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("1example.com", "1example.com"),
        ("x.example123", "x.example123"),
    ],
)
def test_names_are_lower_case_without_the_trailing_dot(host: str, name: str) -> None:
    assert normalise_host(host) == name


@pytest.mark.parametrize(
    "host",
    [
        "",
        ".",
        "example..com",
        "example.com..",
        "-example.com",
        "example-.com",
        "exa mple.com",
        "%31%32%37.0.0.1",  # percent-encoding: not a name, not an address
        "127.0.0.1\\.example.com",
        "a" * 64 + ".example",
        ("a" * 63 + ".") * 4 + "com",  # longer than 253
        "1.2.3.4.5",  # five parts
        "256.0.0.1",  # a part over 255
        "1.2.3.256",
        "1.2.65536",
        "4294967296",  # over 32 bits
        "08.0.0.1",  # neither octal nor decimal
        "0x1g.0.0.1",
        "example.123",  # ends in a number, but is not an address
        "[::g]",
        "::1::",
        "bücher.example",
        "example.com\n",  # a regular expression's $ would let the newline through
        "127.0.0.1\n",
        "0x7f000001\n",
    ],
)
def test_hosts_that_are_neither_name_nor_address_are_invalid(host: str) -> None:
    with pytest.raises(InvalidHost):
        normalise_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "0.0.0.0",
        "0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "0xa9fea9fe",
        "fd00::1",
        "fe80::1",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
        "a.b.localhost.",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    ],
)
def test_hosts_that_denote_an_internal_address_are_refused(host: str) -> None:
    assert PUBLIC_ONLY.host_refusal(host) == "address not allowed"


@pytest.mark.parametrize(
    "host",
    ["example.com", "erp.example", "callbacks.example.com.", "8.8.8.8", "2001:4860:4860::8888"],
)
def test_public_hosts_are_accepted_before_any_lookup(host: str) -> None:
    assert PUBLIC_ONLY.host_refusal(host) is None


def test_an_allowed_range_is_honoured_for_hosts_too() -> None:
    for host in ("127.0.0.1", "0x7f000001", "127.1", "localhost", "a.localhost"):
        assert ALLOW_LOOPBACK.host_refusal(host) is None, host
    assert ALLOW_LOOPBACK.host_refusal("127.0.0.2") == "address not allowed"
    assert ALLOW_LOOPBACK.host_refusal("10.0.0.1") == "address not allowed"


def test_local_names() -> None:
    assert is_local_name("localhost") and is_local_name("x.localhost.")
    assert not is_local_name("localhost.example.com")
    assert not is_local_name("notlocalhost")


def test_mapped_and_zoned_forms_are_plain_addresses() -> None:
    assert normalise_host("::ffff:127.0.0.1") == IPv4Address("127.0.0.1")
    assert normalise_host("fe80::1%25eth0") == IPv6Address("fe80::1")
