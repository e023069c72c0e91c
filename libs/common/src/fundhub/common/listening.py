"""A Postgres LISTEN that outlives its connection.

A loop that sleeps until a ``NOTIFY`` wakes it (the outbox relay, the settlement scheduler) held
one pooled connection listening for its whole life. When the server restarted that connection
died, nothing listened any more and the loop fell back to its idle timeout for good (half a
second on every event for the relay); and the dead connection, never given back, kept the
pool's close waiting. Here the loss itself wakes the loop, and the next ``ensure`` listens again
on a fresh connection, returning the dead one to the pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from fundhub.common.db import Lent, Pool

log = structlog.get_logger(__name__)


class ChannelListener:
    """Calls ``wake`` on every notification of ``channel``, and once when the connection is
    lost (whatever was notified while no one listened is gone: the woken loop looks anyway)."""

    def __init__(self, pool: Pool, channel: str, wake: Callable[[], None]) -> None:
        self._pool = pool
        self._channel = channel
        self._wake = wake
        self._conn: Lent | None = None
        self.lost = 0  # connections lost so far (a test's and a log's figure)

    def _notified(self, *_: object) -> None:
        self._wake()

    def _terminated(self, *_: object) -> None:
        self._wake()

    @property
    def listening(self) -> bool:
        if self._conn is None:
            return False
        try:
            return not self._conn.is_closed()
        except asyncpg.InterfaceError:  # the pool took it back itself when it died
            return False

    async def ensure(self) -> None:
        """Listening when it returns (raises what the pool raises when the server is away).

        Called before each pass of the loop: a pass follows a re-listen, so what was committed
        while no one listened is found by it."""
        if self.listening:
            return
        if self._conn is not None:
            self.lost += 1
            await self.close()
            log.warning("listen_lost", channel=self._channel, times=self.lost)
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(self._channel, self._notified)
            conn.add_termination_listener(self._terminated)
        except BaseException:
            await self._release(conn)
            raise
        self._conn = conn
        if self.lost:
            log.info("listen_restored", channel=self._channel)

    async def close(self) -> None:
        """Stop listening and give the connection back, alive or dead, whatever fails."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # A dead connection cannot UNLISTEN; one the pool took back cannot be asked at all.
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(self._terminated)
                await conn.remove_listener(self._channel, self._notified)
        finally:
            await self._release(conn)

    async def _release(self, conn: Lent) -> None:
        with contextlib.suppress(Exception):
            await self._pool.release(conn)
