"""What both channel adapters do alike around one HTTP call: the connection pool, and the
retries (``common.retry``) that end in ``ChannelUnavailable``.

A retried request is the same request: the same ``out_trade_no`` / ``out_refund_no``, which the
channel deduplicates, so a retry after an answer that was lost never pays or refunds twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import structlog

from fundhub.channels.ports import ChannelUnavailable
from fundhub.common import retry

log = structlog.get_logger(__name__)

T = TypeVar("T")
EXCERPT = 200


class Retry(Exception):
    """One attempt failed in a way another attempt may cure (kept inside the adapters)."""


def channel_session(max_connections: int = 100) -> aiohttp.ClientSession:
    """One pool per process towards the channels (TLS by the system's trust store for https).
    Idle connections are dropped before a server's usual keep-alive would close them."""
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=2.0)
    return aiohttp.ClientSession(connector=connector)


def excerpt(raw: bytes) -> str:
    return raw[:EXCERPT].decode("utf-8", "replace")


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout_s: float,
    data: bytes | dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request: status, headers (lower-case names) and body, or ``Retry``."""
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await response.read()
            answer_headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, answer_headers, body
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
        raise Retry(f"no answer within {timeout_s:g} s") from exc
    except aiohttp.ClientError as exc:
        raise Retry(f"transport error ({type(exc).__name__})") from exc


async def retried(
    what: str,
    attempt_once: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff_s: float,
    max_backoff_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``attempt_once`` until it returns or raises anything but ``Retry``, at most
    ``retries + 1`` times; then ``ChannelUnavailable``."""
    attempts = 0
    try:
        async for attempt in retry.a_few_times(
            what, retries + 1, on=(Retry,), base_s=backoff_s, max_s=max_backoff_s, sleep=sleep
        ):
            with attempt:
                attempts += 1
                return await attempt_once()
    except Retry as exc:
        log.warning("channel_call_gave_up", what=what, attempts=attempts, reason=str(exc))
        raise ChannelUnavailable(f"{what}: {exc} ({attempts} attempts)") from exc
    raise AssertionError("unreachable: the retries end in a return or a raise")
