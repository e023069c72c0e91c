"""Delivering notifications as the channels do: signed at each attempt, retried on the channels'
own schedules (scaled by ``timeFactor`` for tests), sometimes twice, sometimes late.

- WeChat Pay counts HTTP 200 or 204 as received; anything else (a 4xx/5xx, a timeout, a refused
  connection) is retried after 15 s, 15 s, 30 s, 3 m, 10 m, 20 m, 30 m, 30 m, 30 m, 60 m, 3 h,
  3 h, 3 h, 6 h, 6 h (about 24 h).
- Alipay counts the body ``success`` (exactly) as received; it tries 8 times within about 25 h:
  after 4 m, 10 m, 10 m, 1 h, 2 h, 6 h, 15 h.

A notice's first delivery waits a random ``delayMs``, so notices close in time (a payment and
its refund, two refunds) may arrive in either order; ``duplicateRate`` sends a second copy
(same id) a little later. Every delivery is signed at its own time, so a retry hours later
still carries a fresh timestamp.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from fundhub.channel_simulator.metrics import NOTICES, RETRIES
from fundhub.channels.events import Channel
from fundhub.common.clock import utcnow

log = structlog.get_logger("fundhub.channel_simulator.notifier")

WECHATPAY_RETRIES_S: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip
ALIPAY_RETRIES_S: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)
_MAX_DELAY_MS = 3_600_000
_KEPT_DELIVERIES = 10_000
_ANSWER_LIMIT = 200

DelayRange = tuple[int, int]
# What one attempt posts: (headers, body), made at the attempt's time.
Post = tuple[dict[str, str], bytes]


class Behaviour(BaseModel):
    """How the channels behave this run (``POST /sim/behaviour``, camelCase; CLI flags)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    time_factor: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Retry schedules are multiplied by this."
    )
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_ms: DelayRange = Field(
        default=(0, 0), description="[min, max] before a notice's first delivery."
    )
    refund_delay_ms: DelayRange = Field(
        default=(50, 200), description="[min, max] from a WeChat Pay refund to its outcome."
    )
    refund_close_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="WeChat Pay refunds that end CLOSED."
    )
    timeout_s: float = Field(default=10.0, gt=0.0, le=60.0)
    seed: int | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("delay_ms", "refund_delay_ms"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= _MAX_DELAY_MS:
                raise ValueError(f"{to_camel(name)}: [min, max] with 0 <= min <= max <= 3600000")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


@dataclass
class Delivery:
    """One notice's deliveries so far (a duplicate is a delivery of its own)."""

    channel: Channel
    notification_id: str
    label: str  # what it tells: TRANSACTION.SUCCESS, REFUND.SUCCESS, TRADE_SUCCESS…
    out_trade_no: str
    url: str
    attempts: int = 0
    outcome: str = "pending"  # pending | delivered | gave-up
    last_status: int | None = None
    last_answer: str = ""
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "notificationId": self.notification_id,
            "label": self.label,
            "outTradeNo": self.out_trade_no,
            "url": self.url,
            "attempts": self.attempts,
            "outcome": self.outcome,
            "lastStatus": self.last_status,
            "lastAnswer": self.last_answer,
            "duplicate": self.duplicate,
        }


@dataclass
class Stats:
    notices: int = 0
    duplicates: int = 0
    attempts: int = 0
    retries: int = 0
    delivered: int = 0
    gave_up: int = 0
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=_KEPT_DELIVERIES))

    def to_json(self) -> dict[str, int]:
        return {
            "notices": self.notices,
            "duplicates": self.duplicates,
            "attempts": self.attempts,
            "retries": self.retries,
            "delivered": self.delivered,
            "gaveUp": self.gave_up,
        }


class Notifier:
    """Sends notices in the background between ``async with notifier.running():`` and its end
    (which cancels what is pending: the simulated channel forgets its unsent notices)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.random = random.Random(behaviour.seed)
        self.stats = Stats()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        if behaviour.seed is not None:
            self.random = random.Random(behaviour.seed)

    @property
    def is_running(self) -> bool:
        return self._session is not None

    @property
    def pending(self) -> int:
        return len(self._tasks)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            try:
                yield self
            finally:
                self._session = None
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)

    def delay_s(self, span: DelayRange) -> float:
        low, high = span
        return self.random.uniform(low, high) / 1000.0

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._session is None:
            work.close()
            raise RuntimeError("the notifier is not running")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(
        self,
        channel: Channel,
        notification_id: str,
        label: str,
        out_trade_no: str,
        url: str,
        post: Callable[[datetime], Post],
    ) -> None:
        """Deliver a notice (and maybe a copy of it) in the background."""
        self.stats.notices += 1
        NOTICES.labels(channel.value, "sent").inc()
        copies = 2 if self.random.random() < self.behaviour.duplicate_rate else 1
        for copy in range(copies):
            delivery = Delivery(channel, notification_id, label, out_trade_no, url)
            delivery.duplicate = copy > 0
            self.stats.deliveries.append(delivery)
            delay = self.delay_s(self.behaviour.delay_ms)
            if copy:
                self.stats.duplicates += 1
                NOTICES.labels(channel.value, "duplicated").inc()
                delay += self.delay_s((0, max(50, self.behaviour.delay_ms[1])))
            self.spawn(self._deliver(delivery, post, delay), f"notify-{notification_id}-{copy}")

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def _deliver(
        self, delivery: Delivery, post: Callable[[datetime], Post], delay_s: float
    ) -> None:
        await asyncio.sleep(delay_s)
        schedule = (
            WECHATPAY_RETRIES_S if delivery.channel is Channel.WECHATPAY else ALIPAY_RETRIES_S
        )
        for attempt in range(len(schedule) + 1):
            if attempt:
                self.stats.retries += 1
                RETRIES.labels(delivery.channel.value).inc()
                await asyncio.sleep(schedule[attempt - 1] * self.behaviour.time_factor)
            delivery.attempts += 1
            self.stats.attempts += 1
            if await self._attempt(delivery, *post(utcnow())):
                delivery.outcome = "delivered"
                self.stats.delivered += 1
                NOTICES.labels(delivery.channel.value, "delivered").inc()
                return
            log.info(
                "channel_notify_attempt_failed",
                channel=delivery.channel.value,
                notification_id=delivery.notification_id,
                attempt=delivery.attempts,
                status=delivery.last_status,
                answer=delivery.last_answer,
            )
        delivery.outcome = "gave-up"
        self.stats.gave_up += 1
        NOTICES.labels(delivery.channel.value, "gave-up").inc()
        log.warning(
            "channel_notify_gave_up",
            channel=delivery.channel.value,
            notification_id=delivery.notification_id,
            attempts=delivery.attempts,
        )

    async def _attempt(self, delivery: Delivery, headers: dict[str, str], body: bytes) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.behaviour.timeout_s),
            ) as response:
                delivery.last_status = response.status
                answer = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            delivery.last_status, delivery.last_answer = None, type(exc).__name__
            return False
        delivery.last_answer = answer[:_ANSWER_LIMIT].decode("utf-8", "replace")
        if delivery.channel is Channel.WECHATPAY:
            return response.status in (200, 204)
        return answer == b"success"
