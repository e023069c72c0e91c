"""Request rate limits: what a limit is, how it is written, and which class a route falls in.
Pure, no I/O.

A limit ``N/unit`` lets N requests through at once, then one every ``unit / N`` (GCRA, the
generic cell rate algorithm: a bucket is one timestamp, the theoretical arrival time of the next
request, so the shared state per bucket is one number and a check is one read-modify-write).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Route classes: a key's limit is set per class, and counted per key and route.
CLASS_READ = "read"  # GET routes: balances, transactions, payouts
CLASS_WRITE = "write"  # POST routes: payout submission, callback replay
ROUTE_CLASSES: tuple[str, ...] = (CLASS_READ, CLASS_WRITE)

_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour)s?\s*$")


class InvalidRate(ValueError):
    """A limit written wrongly; the message says how to write it."""


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``period_s`` seconds, all of them at once if need be."""

    limit: int
    period_s: float

    @property
    def interval_s(self) -> float:
        """The time one request uses up: the bucket's timestamp moves this far per request."""
        return self.period_s / self.limit

    def __str__(self) -> str:
        unit = next(name for name, seconds in _UNITS.items() if seconds == self.period_s)
        return f"{self.limit}/{unit}"


def parse_rate(text: str) -> Rate:
    """``100/second``, ``6000/minute``, ``10/hour`` (a plural unit is fine)."""
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise InvalidRate(f"invalid rate {text!r}: write N/second, N/minute or N/hour, N >= 1")
    return Rate(int(match.group(1)), _UNITS[match.group(2)])


def parse_key_limits(text: str) -> dict[str, Rate]:
    """A key's limits: ``N/unit`` for every route class, or ``read=N/unit,write=N/unit``."""
    text = text.strip()
    if "=" not in text:
        rate = parse_rate(text)
        return dict.fromkeys(ROUTE_CLASSES, rate)
    limits: dict[str, Rate] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in ROUTE_CLASSES:
            raise InvalidRate(f"unknown route class {name!r} (classes: {', '.join(ROUTE_CLASSES)})")
        if name in limits:
            raise InvalidRate(f"route class {name!r} given twice")
        limits[name] = parse_rate(value)
    return limits


def route_class(method: str) -> str:
    """Reads cost little and come in bursts; writes move money: each has its own limit."""
    return CLASS_READ if method in ("GET", "HEAD") else CLASS_WRITE


# A replica takes up to this share of a limit from the shared count at once and hands it out
# locally, so that a busy key costs one round trip per lease instead of one per request. The
# price: a limit can be exceeded by what the replicas hold unused (at most 1 % of it each), and
# a lease unused for LEASE_TTL_S is dropped (counted, never given).
LEASE_SHARE = 100
LEASE_MAX = 50
LEASE_TTL_S = 1.0


def lease_size(rate: Rate) -> int:
    """1 for small limits (exact counting); 1 % of a large one, at most ``LEASE_MAX``."""
    return max(1, min(LEASE_MAX, rate.limit // LEASE_SHARE))


def share_out(asked: list[int], allowed: int) -> list[int]:
    """``allowed`` tokens to requests asking ``asked`` each, first come first served."""
    granted = []
    for want in asked:
        give = min(want, allowed)
        granted.append(give)
        allowed -= give
    return granted


def key_bucket(key_id: str, method: str, route: str) -> str:
    """One bucket per key and route (the route's template, not the path with its ids)."""
    return f"k|{key_id}|{method} {route}"


def address_bucket(kind: str, address: str) -> str:
    """One bucket per source address and kind of unauthenticated traffic."""
    return f"a|{kind}|{address}"


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up, at least 1: a client that waits that long gets through."""
    whole = int(wait_s)
    return str(max(1, whole + (1 if wait_s > whole else 0)))


def gcra(tat: float | None, now: float, rate: Rate, count: int = 1) -> tuple[float, int, float]:
    """``count`` requests at ``now`` against a bucket whose next arrival time is ``tat`` (None:
    never seen): ``(new_tat, allowed, wait_s)``: the first ``allowed`` pass and are counted,
    the others may try again in ``wait_s``.

    The same arithmetic as the store's SQL function ``rate_limit_take`` (migration 0008),
    which applies it atomically across replicas; here so it is written down and tested.
    """
    start = now if tat is None or tat < now else tat
    allowed = max(0, min(count, math.floor((now + rate.period_s - start) / rate.interval_s + 1e-9)))
    new_tat = start + allowed * rate.interval_s if allowed else (now if tat is None else tat)
    wait = 0.0
    if allowed < count:
        wait = max(start + (allowed + 1) * rate.interval_s - now - rate.period_s, 0.001)
    return new_tat, allowed, wait
