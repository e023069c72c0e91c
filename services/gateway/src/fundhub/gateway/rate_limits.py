"""Rate limits at the gateway: per source address before anything else is done, per key and
route right after authentication. The counting is in Postgres (``access.limit_store``), so
every replica enforces the same limit; a denial is remembered here until it expires, so a
caller hammering a closed limit costs a dictionary lookup, not a round trip.

When the store cannot be reached in ``rate_limit_timeout_s``, the request passes (fail open):
the limits protect capacity, and refusing every request because their counter is down would
turn a counter's outage into a full one. Each such pass is counted
(``fundhub_gateway_rate_limit_store_errors_total``, the metric to alert on) and logged.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from starlette.requests import Request
from starlette.types import Scope

from fundhub.access.keys import ApiKey
from fundhub.access.limit_store import key_limits, purge_buckets, take
from fundhub.access.limits import (
    CLASS_READ,
    CLASS_WRITE,
    LEASE_TTL_S,
    Rate,
    address_bucket,
    key_bucket,
    lease_size,
    parse_rate,
    retry_after_header,
    route_class,
)
from fundhub.common.cache import TtlCache
from fundhub.common.config import (
    ALIPAY_CALLBACK_PATH,
    BANK_CALLBACK_PATH,
    WECHATPAY_CALLBACK_PATH,
    Settings,
)
from fundhub.common.db import Pool, connect_pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.group_commit import GroupCommit
from fundhub.gateway.edge import Exchange, Guard, Observer
from fundhub.gateway.metrics import RATE_LIMIT_STORE_ERRORS, RATE_LIMITED

log = structlog.get_logger(__name__)

KEY_LIMITS_TTL_S = 30.0  # a changed limit of a key applies within this
PURGE_INTERVAL_S = 60.0
_BLOCKED_MAX = 10_000  # remembered denials before expired ones are swept
_ROUTE_LABEL = "rate_limit_route"
# The channels' notifications: one limit per address for both.
CHANNEL_CALLBACK_PATHS = frozenset({WECHATPAY_CALLBACK_PATH, ALIPAY_CALLBACK_PATH})


def rate_limited(wait_s: float) -> FundhubError:
    seconds = retry_after_header(wait_s)
    return FundhubError(
        ErrorCode.RATE_LIMITED,
        f"too many requests; retry after {seconds}s",
        headers={"Retry-After": seconds},
    )


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimiter:
    """The limits of one gateway process; the counts are shared through the store."""

    def __init__(self, settings: Settings) -> None:
        self._defaults = {
            CLASS_READ: parse_rate(settings.rate_limit_read),
            CLASS_WRITE: parse_rate(settings.rate_limit_write),
        }
        self._bank = parse_rate(settings.rate_limit_bank_callback)
        self._channel = parse_rate(settings.rate_limit_channel_callback)
        self._auth_failures = parse_rate(settings.rate_limit_auth_failures)
        self._timeout_s = settings.rate_limit_timeout_s
        self._store_url = settings.rate_limit_database_url
        self._pool: Pool | None = None  # keys' limits: the main database
        self._store: Pool | None = None  # the buckets
        self._own_store = False
        self._key_limits: TtlCache[str, dict[str, Rate]] = TtlCache(KEY_LIMITS_TTL_S)
        self._blocked: dict[str, float] = {}  # bucket -> monotonic time its denial ends
        self._leases: dict[str, tuple[int, float]] = {}  # bucket -> (tokens, valid until)
        self._refills: dict[str, asyncio.Future[None]] = {}  # bucket -> its refill's outcome
        self._waiting: dict[str, int] = {}  # bucket -> requests waiting for its refill
        self._purge: asyncio.Task[None] | None = None
        self._batches: GroupCommit[tuple[str, Rate, int], tuple[int, float]] | None = None

    async def start(self, pool: Pool) -> None:
        self._pool = pool
        if self._store_url:
            # min_size 0: a store down at start is a store down, not a gateway that cannot start.
            self._store = await connect_pool(self._store_url, min_size=0, max_size=4)
            self._own_store = True
        else:
            self._store = pool
        store = self._store
        # Checks that arrive while one statement runs share the next: under load one round
        # trip counts many requests (bench/security_overhead.py measures what the limits cost).
        self._batches = GroupCommit(lambda batch: take(store, batch), conflict_key=id)
        self._purge = asyncio.create_task(self._purge_buckets())

    async def stop(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
        if self._own_store and self._store is not None:
            await self._store.close()

    def guards(self) -> list[Guard]:
        return [self.guard_address]

    def observers(self) -> list[Observer]:
        return [self.observe_auth_failures]

    async def guard_address(self, scope: Scope, route: str) -> None:
        """Before the body is read: the bank's and the channels' callbacks per address; and an
        address whose authentication failures are over their limit is refused on every route
        at once."""
        scope.setdefault("state", {})[_ROUTE_LABEL] = route
        channel = route in CHANNEL_CALLBACK_PATHS
        if not (route.startswith("/v1/") or route == BANK_CALLBACK_PATH or channel):
            return  # health and metrics: a probe sharing an address is never locked out
        address = _address(scope)
        wait = self._remembered(address_bucket("auth", address))
        if wait > 0:
            raise self._refuse("auth-failures", wait)
        if route == BANK_CALLBACK_PATH:
            wait = await self._take(address_bucket("bank", address), self._bank)
            if wait > 0:
                raise self._refuse("bank-callback", wait)
        elif channel:
            wait = await self._take(address_bucket("channel", address), self._channel)
            if wait > 0:
                raise self._refuse("channel-callback", wait)

    async def observe_auth_failures(self, exchange: Exchange) -> None:
        """A 401 counts against its address; past the limit it becomes a 429, and the address
        is refused before its next request is even read."""
        if exchange.answer.status != 401:
            return
        bucket = address_bucket("auth", _address(exchange.scope))
        wait = await self._take(bucket, self._auth_failures)
        if wait > 0:
            raise self._refuse("auth-failures", wait)

    async def check_key(self, request: Request, key: ApiKey) -> None:
        """Per key and route, the key's own limit for the route's class or the default."""
        scope = request.scope
        method = scope["method"]
        route = scope.get("state", {}).get(_ROUTE_LABEL) or scope["path"]
        rate = (await self._limits_of(key.key_id)).get(route_class(method))
        rate = rate or self._defaults[route_class(method)]
        wait = await self._take(key_bucket(key.key_id, method, route), rate)
        if wait > 0:
            request.state.api_key = key  # the caller is known: its refusal is signed
            raise self._refuse("key", wait)

    async def _limits_of(self, key_id: str) -> dict[str, Rate]:
        assert self._pool is not None
        pool = self._pool
        try:
            found = await self._key_limits.get(key_id, lambda k: key_limits(pool, k))
        except Exception as exc:
            log.warning("rate_limit_key_limits_unavailable", error=type(exc).__name__)
            return {}
        return found or {}

    def _remembered(self, bucket: str) -> float:
        until = self._blocked.get(bucket)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[bucket]
            return 0.0
        return left

    async def _take(self, bucket: str, rate: Rate) -> float:
        """One request against ``bucket``: 0.0 when it may pass, else the seconds to wait.

        From this replica's lease when it holds one; else it waits for the bucket's refill
        (one at a time per bucket; the first request to find none starts it), then tries
        the lease again. A refill the store does not answer in time lets its waiters pass."""
        while True:
            wait = self._remembered(bucket)
            if wait > 0:
                return wait
            lease = self._leases.get(bucket)
            if lease is not None and lease[0] > 0 and lease[1] > time.monotonic():
                self._leases[bucket] = (lease[0] - 1, lease[1])
                return 0.0
            self._waiting[bucket] = self._waiting.get(bucket, 0) + 1
            try:
                refill = self._refills.get(bucket) or self._start_refill(bucket, rate)
                await asyncio.shield(refill)
            except Exception as exc:
                RATE_LIMIT_STORE_ERRORS.inc()
                log.warning("rate_limit_store_unavailable", error=type(exc).__name__)
                return 0.0
            finally:
                left = self._waiting[bucket] - 1
                if left:
                    self._waiting[bucket] = left
                else:
                    del self._waiting[bucket]

    def _start_refill(self, bucket: str, rate: Rate) -> asyncio.Future[None]:
        """The bucket's refill, done when the store has answered or its deadline has passed.

        It asks for a lease, or for one token per request waiting now if they are more: under
        load the requests that found the lease spent while a refill ran would otherwise queue
        for one refill after another, each a round trip. Those tokens are spent as soon as the
        refill returns, so what a replica holds unused stays within a lease. One deadline per
        refill (a timer), not one per waiting request."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        done.add_done_callback(_retrieved)  # its waiters may all be gone
        deadline = loop.call_later(self._timeout_s, _settle, done, TimeoutError())
        want = max(lease_size(rate), self._waiting.get(bucket, 0))
        refill = asyncio.ensure_future(self._refill(bucket, rate, want))

        def finished(task: asyncio.Future[None]) -> None:
            deadline.cancel()
            if self._refills.get(bucket) is done:
                del self._refills[bucket]
            if task.cancelled():  # the gateway is stopping: its waiters pass
                _settle(done, RuntimeError("rate limit refill cancelled"))
            else:
                _settle(done, task.exception())

        refill.add_done_callback(finished)
        self._refills[bucket] = done
        return done

    async def _refill(self, bucket: str, rate: Rate, want: int) -> None:
        """``want`` tokens from the store: a lease (the answer is kept even when its waiters
        have given up), or the time the bucket stays closed."""
        assert self._batches is not None
        granted, wait = await self._batches.submit((bucket, rate, want))
        now = time.monotonic()
        if granted > 0:
            self._leases[bucket] = (granted, now + min(LEASE_TTL_S, rate.period_s))
            if len(self._leases) >= _BLOCKED_MAX:
                self._leases = {b: v for b, v in self._leases.items() if v[1] > now}
        else:
            if len(self._blocked) >= _BLOCKED_MAX:
                self._blocked = {b: t for b, t in self._blocked.items() if t > now}
            self._blocked[bucket] = now + wait

    def _refuse(self, limit: str, wait_s: float) -> FundhubError:
        RATE_LIMITED.labels(limit).inc()
        log.info("rate_limited", limit=limit, retry_after_s=round(wait_s, 3))
        return rate_limited(wait_s)

    async def _purge_buckets(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_S)
            try:
                assert self._store is not None
                await purge_buckets(self._store, 60.0)
            except Exception as exc:
                log.warning("rate_limit_purge_failed", error=type(exc).__name__)


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def limit_key(request: Request, key: ApiKey) -> None:
    """The per-key check, called by ``auth.Authenticator`` once the signature holds."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.check_key(request, key)
