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
        # Bumped by drop/clear: a load that was under way meanwhile may have read the old value,
        # so its result is returned but not kept.
        self._generation = 0

    async def get(self, key: K, load: Callable[[K], Awaitable[V | None]]) -> V | None:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now < entry[0]:
            return entry[1]
        generation = self._generation
        value = await load(key)
        if generation == self._generation:
            kept_s = self._ttl_s if value is not None else self._miss_ttl_s
            self._entries[key] = (now + kept_s, value)
        return value

    def drop(self, key: K) -> None:
        """Forget ``key`` now: it changed (the next ``get`` loads it again)."""
        self._generation += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
