"""Client callbacks: signed POSTs of ``callback_deliveries`` rows to the client's callbackUrl.

The sender leases due rows (``FOR UPDATE SKIP LOCKED`` plus a pushed-back ``next_attempt_at``,
so any number of replicas share the work), POSTs each body signed with the API key's webhook
secret, and records every attempt with its outcome: 2xx delivers; anything else retries with
capped exponential backoff and jitter until the delivery is older than ``callback_max_age_s``,
then it is given up (logged as an error and counted). Rows come from ``intake``.

Delivery is at least once, not exactly once: a crash after the POST but before its attempt is
recorded, or a database away for longer than the rest of the lease (recording is retried until
shortly before the lease ends), leaves the lease to expire, and the callback is sent again. A
client must treat callbacks as idempotent by (payId, state). An operator replays a delivery
with ``UPDATE callback_deliveries SET status = 'PENDING', next_attempt_at = now()``; a replay past
the age limit gets one attempt, then gives up again if that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import structlog
from prometheus_client import Counter, Histogram

from fundhub.access.store import sealed_webhook_secret
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.db import Pool
from fundhub.common.retry import TRANSIENT_ERRORS, Backoff, for_at_most
from fundhub.common.sealing import MasterKeys, SealingError, unseal
from fundhub.webhooks.connector import guarded_connector, refused_by_rule
from fundhub.webhooks.destinations import CallbackAddresses
from fundhub.webhooks.policy import (
    ERROR_CONNECTION_FAILED,
    ERROR_INVALID_URL,
    ERROR_NO_ANSWER,
    ERROR_NO_SECRET,
    ERROR_NOT_ALLOWED,
    ERROR_TIMED_OUT,
    Delivered,
    GiveUp,
    RetryPolicy,
    decide,
    signed_headers,
)
from fundhub.webhooks.store import DueDelivery, lease_due, record_attempt

log = structlog.get_logger(__name__)

DELIVERED = Counter("fundhub_callbacks_delivered_total", "Callbacks a client acknowledged (2xx)")
FAILED_ATTEMPTS = Counter(
    "fundhub_callbacks_failed_attempts_total", "Callback attempts without a 2xx answer"
)
GAVE_UP = Counter(
    "fundhub_callbacks_gave_up_total", "Callbacks given up after callback_max_age_s of retries"
)
ATTEMPT_SECONDS = Histogram(
    "fundhub_callbacks_attempt_seconds",
    "Duration of one callback POST, failures included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

LEASE_BATCH = 50
IDLE_POLL_S = 0.5
MAX_IN_FLIGHT = 200
# The lease outlives the slowest attempt, so a live replica's row is never taken from it.
LEASE_MARGIN_S = 30.0
# Recording an attempt is retried (the database may be restarting) until this long before the
# lease ends: past it another replica may lease the row and send the callback again.
RECORD_BEFORE_LEASE_ENDS_S = 5.0
SECRET_TTL_S = 30.0
MAX_ERROR_CHARS = 500
USER_AGENT = "fundhub-callbacks/1"


@dataclass
class _CachedSecret:
    secret: str
    expires: float


class WebhookSecrets:
    """Unsealed webhook secrets per API key, kept half a minute: callbacks are signed with a
    rotated secret within that."""

    def __init__(self, pool: Pool, master_key: MasterKeys, ttl_s: float = SECRET_TTL_S) -> None:
        self._pool = pool
        self._master_key = master_key
        self._ttl_s = ttl_s
        self._cache: dict[str, _CachedSecret] = {}

    async def get(self, key_id: str) -> str | None:
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            return cached.secret
        sealed = await sealed_webhook_secret(self._pool, key_id)
        if sealed is None:
            return None
        try:
            secret = unseal(sealed, self._master_key).decode()
        except (SealingError, UnicodeDecodeError):
            log.error("webhook_secret_unusable", key_id=key_id)
            return None
        self._cache[key_id] = _CachedSecret(secret, now + self._ttl_s)
        return secret


class CallbackSender:
    """Leases due deliveries and POSTs them; safe to run in several replicas at once.

    Each attempt runs as its own task (up to ``MAX_IN_FLIGHT``), so a client that hangs until
    the timeout delays nobody else's callbacks.
    """

    def __init__(
        self, settings: Settings, pool: Pool, master_key: MasterKeys, wake: asyncio.Event
    ) -> None:
        self._pool = pool
        self._policy = RetryPolicy.from_settings(settings)
        self._timeout_s = settings.callback_timeout_s
        self._destinations = CallbackAddresses(settings.callback_allow_cidrs)
        self._secrets = WebhookSecrets(pool, master_key)
        self._wake = wake
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Lease nothing more; ``run`` returns once the attempts in flight are recorded."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        headers = {"User-Agent": USER_AGENT}
        async with self.session(timeout=timeout, headers=headers) as session:
            backoff = Backoff("lease callbacks")
            while not self._stopping.is_set():
                room = MAX_IN_FLIGHT - len(self._in_flight)
                started = 0
                if room > 0:
                    try:
                        started = await self.start_due(session, min(room, LEASE_BATCH))
                        backoff.succeeded()
                    except TRANSIENT_ERRORS as exc:
                        await backoff.failed(exc)
                        continue
                if started < LEASE_BATCH:
                    await self._idle()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    def session(self, **options: Any) -> aiohttp.ClientSession:
        """The one way this sender reaches clients: through the guarded connector, without
        the environment's proxy settings (a proxy would connect on our behalf, unchecked)."""
        return aiohttp.ClientSession(
            connector=guarded_connector(self._destinations), trust_env=False, **options
        )

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=IDLE_POLL_S)
        self._wake.clear()

    async def start_due(self, session: aiohttp.ClientSession, limit: int) -> int:
        now = utcnow()
        lease_until = now + timedelta(seconds=self._timeout_s + LEASE_MARGIN_S)
        due = await lease_due(self._pool, now, lease_until, limit)
        for delivery in due:
            task = asyncio.create_task(self._attempt(session, delivery, time.monotonic()))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(due)

    def _finished(self, task: asyncio.Task[None]) -> None:
        was_full = len(self._in_flight) >= MAX_IN_FLIGHT
        self._in_flight.discard(task)
        if was_full:
            self._wake.set()  # room again: lease more without waiting for the idle poll

    async def _attempt(
        self, session: aiohttp.ClientSession, delivery: DueDelivery, leased_at: float
    ) -> None:
        attempted_at = utcnow()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None  # what the tenant may read; the detail goes to the log
        detail: str | None = None
        try:
            secret = await self._secrets.get(delivery.key_id)
        except TRANSIENT_ERRORS as exc:
            # Nothing sent; the lease expires and the attempt happens later.
            log.error("webhook_secret_lookup_failed", key_id=delivery.key_id, error=str(exc))
            return
        if secret is None:
            error = ERROR_NO_SECRET
            detail = f"no usable webhook secret for API key {delivery.key_id}"
        else:
            headers = signed_headers(secret, delivery.body, int(time.time()))
            try:
                async with session.post(
                    delivery.url, data=delivery.body, headers=headers, allow_redirects=False
                ) as response:
                    status_code = response.status
            except TimeoutError:
                error = ERROR_TIMED_OUT
                detail = f"timed out after {self._timeout_s:g}s"
            except (aiohttp.ClientError, ValueError, OSError) as exc:
                error = _public_error(exc)
                detail = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        elapsed = time.perf_counter() - started
        ATTEMPT_SECONDS.observe(elapsed)
        outcome = decide(
            status_code, delivery.attempts, delivery.created_at, utcnow(), self._policy
        )
        lease_left_s = self._timeout_s + LEASE_MARGIN_S - (time.monotonic() - leased_at)
        try:
            async for retry in for_at_most(
                "record callback attempt", lease_left_s - RECORD_BEFORE_LEASE_ENDS_S
            ):
                with retry:
                    await record_attempt(
                        self._pool,
                        delivery.delivery_id,
                        attempted_at,
                        status_code,
                        error,
                        int(elapsed * 1000),
                        outcome,
                    )
        except TRANSIENT_ERRORS as exc:
            # Not recorded within the lease (the database away for longer): the lease expires
            # and the callback is sent again. A duplicate, never a loss.
            log.error("attempt_not_recorded", delivery_id=delivery.delivery_id, error=str(exc))
            return
        fields = {
            "delivery_id": delivery.delivery_id,
            "pay_id": delivery.pay_id,
            "state": delivery.state,
            "attempt": delivery.attempts + 1,
            "status_code": status_code,
            "error": detail,
        }
        if isinstance(outcome, Delivered):
            DELIVERED.inc()
            log.info("callback_delivered", **fields)
            return
        FAILED_ATTEMPTS.inc()
        if isinstance(outcome, GiveUp):
            GAVE_UP.inc()
            log.error("callback_gave_up", **fields)
        else:
            log.warning("callback_attempt_failed", next_attempt_at=outcome.at.isoformat(), **fields)


def _public_error(exc: BaseException) -> str:
    """The kind of failure, as ``policy.PUBLIC_ERRORS`` names it."""
    if refused_by_rule(exc):
        return ERROR_NOT_ALLOWED
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return ERROR_INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorError | OSError):
        return ERROR_CONNECTION_FAILED
    return ERROR_NO_ANSWER
