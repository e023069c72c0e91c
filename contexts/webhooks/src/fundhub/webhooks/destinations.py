"""Where a client callback may go: public addresses only, unless the operator allows a range.

Pure, no I/O. A tenant chooses its ``callbackUrl``, and the dispatcher POSTs to it from inside
our network: without this check the tenant could make it reach loopback services, the cloud's
metadata endpoint or private hosts, and read the attempt errors as a port scanner. The check
runs twice: on the URL's host when the payout is submitted (``payouts.request``, a clear E001
early), and on every address the dispatcher is about to connect to, after DNS resolution
(``webhooks.connector``), so a public-looking name that resolves inside is refused too. The
second check is the one that holds; the first only refuses what can be known from the text.

Host normalisation follows what resolvers accept, not only the canonical dotted quad: glibc's
``inet_aton`` (and the WHATWG URL Standard's IPv4 parser, which copies it) read ``0x7f000001``,
``2130706433``, ``0177.0.0.1`` and ``127.1`` as 127.0.0.1, and a trailing dot is the same name.
Written here with :mod:`ipaddress` rather than taken from a URL library: the parser is a few
lines, the standard's algorithm is small and fixed, and the connection-time check after
resolution does not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Never a callback destination (unless allowed by the operator): not globally reachable, or
# not unicast. RFC 6890 and the IANA special-purpose registries, plus multicast.
REFUSED_V4: tuple[IPv4Network, ...] = tuple(
    IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", the unspecified address
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space (CGNAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata endpoints
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
REFUSED_V6: tuple[IPv6Network, ...] = tuple(
    IPv6Network(cidr)
    for cidr in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo included
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# IPv6 forms that carry an IPv4 address which a gateway or the kernel would reach.
_V4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")

# Names that mean this machine on any resolver (RFC 6761) or in Debian's /etc/hosts.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOOPBACK = (IPv4Address("127.0.0.1"), IPv6Address("::1"))
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL = re.compile(r"0[0-7]+")
MAX_HOSTNAME = 253


class InvalidHost(ValueError):
    """A host that is neither an address nor a DNS name (or a numeric form out of range)."""


@dataclass(frozen=True)
class CallbackAddresses:
    """The rule for callback destinations; ``allowed`` ranges are let through whatever they are."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, cidrs: Iterable[IPNetwork | str]) -> CallbackAddresses:
        return cls(tuple(_network(c) for c in cidrs))

    def permits(self, address: IPAddress | str) -> bool:
        """May a callback connect to this address? Unparseable text is refused (fail closed)."""
        if isinstance(address, str):
            try:
                address = ip_address(address)
            except ValueError:
                return False
        address = _plain(address)
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        return not is_internal(address)

    def host_refusal(self, host: str) -> str | None:
        """Why a URL's host is refused before any lookup, or None when it may be tried.

        A name is accepted here (its addresses are checked at connection time) unless it is
        one that always means this machine and loopback is not allowed. Raises InvalidHost
        for a host that is not one.
        """
        normal = normalise_host(host)
        if isinstance(normal, str):
            if is_local_name(normal) and not any(self.permits(a) for a in _LOOPBACK):
                return "address not allowed"
            return None
        return None if self.permits(normal) else "address not allowed"


def check_url_shape(value: str) -> str:
    """``value`` if it is a callback URL as one can be tried: plain ASCII, http(s), a host that
    is a DNS name or an address, a valid port, no user info (it would end up in logs). Raises
    ValueError naming the flaw. Where the host may point is ``CallbackAddresses``' question."""
    if not value.isascii() or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("not a plain ASCII URL")
    parts = urlsplit(value)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("not an http(s) URL with a host")
    if "@" in parts.netloc:
        raise ValueError("credentials in the URL")
    _ = parts.port  # ValueError for a port that is not a number in range
    try:
        normalise_host(host)
    except InvalidHost:
        raise ValueError("not a host name or address") from None
    return value


def is_internal(address: IPAddress) -> bool:
    """Loopback, private, link-local, shared, unspecified, multicast, reserved, documentation,
    and IPv6 forms that carry such an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo)."""
    address = _plain(address)
    if isinstance(address, IPv4Address):
        return any(address in network for network in REFUSED_V4)
    if any(address in network for network in REFUSED_V6):
        return True
    embedded = _embedded_v4(address)
    if embedded is not None and is_internal(embedded):
        return True
    # Python's own view as a second opinion: refusing more is safe, less is not.
    return (
        address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_site_local
    )


def normalise_host(host: str) -> IPAddress | str:
    """A URL's host as what a resolver reads it as: an address, or a lower-case DNS name
    without its trailing dot. Raises InvalidHost for anything else."""
    text = host.strip("[]").lower() if host.startswith("[") else host.lower()
    if ":" in text:
        try:
            return _plain(ip_address(text.replace("%25", "%", 1)))
        except ValueError:
            raise InvalidHost(host) from None
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > MAX_HOSTNAME:
        raise InvalidHost(host)
    labels = text.split(".")
    if _is_number(labels[-1]):
        return _ipv4(labels, host)
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHost(host)
    return text


def is_local_name(name: str) -> bool:
    """``localhost`` and every name under it (RFC 6761), and the loopback names of /etc/hosts."""
    name = name.lower().rstrip(".")
    return name in _LOCAL_NAMES or name.endswith(".localhost")


def _network(value: IPNetwork | str) -> IPNetwork:
    if isinstance(value, str):
        return ip_network(value.strip())
    return value


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is that IPv4 address; a zone index changes no range."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(address.packed)
    return address


def _embedded_v4(address: IPv6Address) -> IPv4Address | None:
    if address in _V4_COMPATIBLE or address in _NAT64:
        return IPv4Address(address.packed[-4:])
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _is_number(label: str) -> bool:
    return bool(_DECIMAL.fullmatch(label) or _HEX.fullmatch(label))


def _ipv4(labels: list[str], host: str) -> IPv4Address:
    """The WHATWG URL Standard's IPv4 parser (inet_aton's forms): 1 to 4 parts, each decimal,
    0x-hex or 0-octal; the last fills the remaining bytes."""
    if len(labels) > 4:
        raise InvalidHost(host)
    numbers = [_ipv4_part(label, host) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise InvalidHost(host)
    value = last
    for index, number in enumerate(head):
        value += number * 256 ** (3 - index)
    return IPv4Address(value)


def _ipv4_part(label: str, host: str) -> int:
    if _HEX.fullmatch(label):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        if _OCTAL.fullmatch(label):
            return int(label[1:], 8)
        raise InvalidHost(host)  # 08, 09: neither octal nor decimal
    if _DECIMAL.fullmatch(label):
        return int(label, 10)
    raise InvalidHost(host)
