"""Lookups remembered for a while, for reads on every request that change rarely."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Unknown keys are remembered this long, so a flood of bad ids cannot hammer the database,
# while a key added meanwhile is seen soon.
MISS_TTL_S = 2.0


class TtlCache(Generic[K, V]):
    """What ``load`` found for a key, kept ``ttl_s`` (a change takes effect within that)."""

    def __init__(self, ttl_s: float, miss_ttl_s: float = MISS_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._miss_ttl_s = miss_ttl_s
        self._entries: dict[K, tuple[float, V | None]] = {}

    async def get(self, key: K, load: Callable[[K], Awaitable[V | None]]) -> V | None:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now < entry[0]:
            return entry[1]
        value = await load(key)
        kept_s = self._ttl_s if value is not None else self._miss_ttl_s
        self._entries[key] = (now + kept_s, value)
        return value
