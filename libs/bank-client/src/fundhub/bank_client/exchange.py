"""One request to the bank, retried while another try may cure it; and how its reply is read.

Every call the bank dedupes by an id the caller sends again (a payout's ``bank_request_id``, a
split's ``split_request_id``, an order id…), so a request whose fate is unknown is simply sent
again. What another try may cure: no answer in time, a transport error, a 5xx, 408 or 429, and
whatever a reader finds unusable (``TryAgain``). Any other status is the bank's verdict, read by
the caller's protocol. After the last try the caller's own "unavailable" error is raised.

``post`` and ``query`` are the two exchanges every protocol of the bank makes of these: a request
sent, read as its answer or its refusal; a request's state asked for, ``None`` when the bank
never received it. The caller says where, what is sent and how the answer reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import aiohttp
import orjson
import structlog

from fundhub.bank_client.refusal import Refused
from fundhub.common import retry

log = structlog.get_logger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
RETRIED_4XX = frozenset({408, 429})  # request timeout, too many requests: try again
EXCERPT_CHARS = 200

T = TypeVar("T")


class TryAgain(Exception):
    """This attempt failed in a way another try may cure (its text says how, for the log)."""


@dataclass(frozen=True)
class Reply:
    """What the bank answered: a status the retry did not take for a passing failure."""

    status: int
    raw: bytes

    @cached_property
    def parsed(self) -> Any:
        """The body as JSON, ``None`` when it is not JSON."""
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None

    @property
    def excerpt(self) -> str:
        """The start of the body, for a log line or a refusal's reason."""
        return self.raw.decode("utf-8", "replace")[:EXCERPT_CHARS]


def never_received(reply: Reply, not_found: str) -> bool:
    """For a query: whether the bank says it never received the request (its own 404 with
    ``status`` = ``not_found``). Any other 404 (a proxy's, a wrong path's) is worth another try,
    never "never received": that would send the request again and lose the real answer."""
    if reply.status != 404:
        return False
    if isinstance(reply.parsed, Mapping) and reply.parsed.get("status") == not_found:
        return True
    raise TryAgain(f"HTTP 404 without the bank's {not_found}: {reply.excerpt}")


def read_reply(reply: Reply, parse: Callable[[Any], T], refused: Callable[[Reply], Exception]) -> T:
    """A 200 as ``parse`` reads its JSON (a ``ValueError``: unusable, worth another try); any
    other status is the bank's refusal of the request, as ``refused`` words it."""
    if reply.status != 200:
        raise refused(reply)
    try:
        return parse(reply.parsed)
    except ValueError as exc:
        raise TryAgain(f"unusable answer: {exc}") from exc


def _refusal(refused: type[Refused]) -> Callable[[Reply], Refused]:
    return lambda reply: refused.from_answer(reply.status, reply.parsed, reply.excerpt)


class JsonExchange:
    """JSON requests to the bank over the caller's session (the process's one pool), each
    attempt bounded by ``timeout_s``, retried ``retries`` times (so ``retries + 1`` attempts)
    after ``common.retry``'s exponential backoff with full jitter, from ``backoff_s`` up to
    ``max_backoff_s``. Failed attempts are logged as ``event``; after the last,
    ``unavailable(message)`` is raised."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        event: str,
        unavailable: Callable[[str], Exception],
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("timeout_s > 0, retries >= 0, 0 <= backoff_s <= max_backoff_s")
        self._session = session
        self._event = event
        self._unavailable = unavailable
        self.timeout_s = timeout_s
        self.retries = retries
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = (backoff_s, max_backoff_s)
        self._sleep = sleep

    async def send(self, method: str, url: str, body: bytes | None = None) -> Reply:
        """One attempt: the bank's reply, or ``TryAgain`` for what a retry may cure."""
        try:
            async with self._session.request(
                method, url, data=body, headers=_JSON_HEADERS, timeout=self._timeout
            ) as response:
                reply = Reply(response.status, await response.read())
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TryAgain(f"no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise TryAgain(f"transport error ({type(exc).__name__})") from exc
        if reply.status >= 500 or reply.status in RETRIED_4XX:
            raise TryAgain(f"HTTP {reply.status}: {reply.excerpt}")
        return reply

    async def post(
        self,
        action: str,
        subject: str,
        url: str,
        payload: Any,
        parse: Callable[[Any], T],
        refused: type[Refused],
        **context: Any,
    ) -> T:
        """``payload`` as JSON to ``url``, retried as ``call`` says: the answer as ``read_reply``
        reads it, ``refused`` for the bank's refusal. Encoded once, so every try sends the same
        bytes."""
        body = orjson.dumps(payload)

        async def once() -> T:
            return read_reply(await self.send("POST", url, body), parse, _refusal(refused))

        return await self.call(action, subject, once, **context)

    async def query(
        self,
        subject: str,
        url: str,
        not_found: str,
        parse: Callable[[Any], T],
        refused: type[Refused],
        **context: Any,
    ) -> T | None:
        """``GET url``, retried as ``call`` says: ``None`` when the bank says (``not_found``) it
        never received ``subject``, else its answer as ``read_reply`` reads it."""

        async def once() -> T | None:
            reply = await self.send("GET", url)
            if never_received(reply, not_found):
                return None
            return read_reply(reply, parse, _refusal(refused))

        return await self.call("query", subject, once, **context)

    async def call(
        self,
        action: str,
        subject: str,
        attempt_once: Callable[[], Awaitable[T]],
        **context: Any,
    ) -> T:
        """``attempt_once`` until it returns or raises anything but ``TryAgain``, at most
        ``retries + 1`` times. ``action`` and ``subject`` ("submit", the request's id) and
        ``context`` (log fields) say what is tried, in the log and in the final error."""
        attempts = 0
        base_s, max_s = self._backoff
        try:
            async for attempt in retry.a_few_times(
                f"bank {action}",
                self.retries + 1,
                on=(TryAgain,),
                base_s=base_s,
                max_s=max_s,
                sleep=self._sleep,
            ):
                with attempt:
                    attempts += 1
                    try:
                        return await attempt_once()
                    except TryAgain as exc:
                        log.warning(
                            self._event,
                            action=action,
                            attempt=attempts,
                            reason=str(exc),
                            will_retry=attempts <= self.retries,
                            **context,
                        )
                        raise
        except TryAgain as exc:
            raise self._unavailable(f"{action} {subject}: {exc} ({attempts} attempts)") from exc
        raise AssertionError("unreachable: the retries end in a return or a raise")
