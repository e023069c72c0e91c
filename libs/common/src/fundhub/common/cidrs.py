"""Address allowlists: CIDR ranges as an operator writes them, and whether a peer is inside.

Pure. Used for the per-key and per-bank-app allowlists; an empty list allows every address
(the default, so that a key without a list behaves as before).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidCidr(ValueError):
    """A range that is not a CIDR (or has host bits set, which is usually a typo)."""


def parse_cidrs(text: str | None) -> list[Network]:
    """Comma-separated ranges (``10.0.0.0/8, 2001:db8::/32``; a bare address is its /32 or
    /128). An empty text is an empty list: no restriction."""
    networks: list[Network] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise InvalidCidr(f"not a CIDR range: {item!r} ({exc})") from None
    return list(dict.fromkeys(networks))


def address_allowed(networks: Sequence[Network], address: str | None) -> bool:
    """True when ``networks`` is empty, or ``address`` lies in one of them. An unknown or
    unparsable address is outside every list (a Unix socket peer has none)."""
    if not networks:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def as_networks(values: Iterable[object]) -> tuple[Network, ...]:
    """Postgres ``cidr[]`` as asyncpg returns it (network objects), or as text."""
    return tuple(ipaddress.ip_network(str(value), strict=False) for value in values)
