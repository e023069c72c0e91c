"""The one retry policy: tenacity's exponential backoff with full jitter, logged.

Every loop that tries again after a failure (a consumer batch, the outbox relay, the webhook
sender's lease, a call to the bank) takes its pause from here, so "how long, how often, what
is worth another try" is decided in one place. Full jitter (a uniform draw below the capped
exponential) keeps replicas that failed together from retrying in step.

Worth another try is what says nothing about the data: the database or the broker out of reach,
a connection dropped or released under us, a timeout. A failure that depends on the data (a
constraint, a value Postgres refuses) fails the same way every time; callers park it instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)
from tenacity.stop import StopBaseT

from fundhub.common.kafka import PublishFailed

log = structlog.get_logger(__name__)

# Errors that depend on the data, not on the database being reachable: never retried as they are.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
# The database out of reach or a connection to it lost: refused or dropped connections, a pool or
# statement timeout, the server stopping or starting (class 57, e.g. a statement ended by a
# shutdown, 57P01). The same statement may succeed on a new connection; the gateway answers
# these with 503 E013 (retry) rather than a 500.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    # A connection used after the server closed it ("connection is closed").
    asyncpg.InterfaceError,
    # A connection dropped by the server mid-operation can leave asyncpg's protocol state
    # confused ("cannot switch to state 12; another operation (2) is in progress"): it says
    # nothing about the data, the connection is dropped and a new one works. Not retrying it
    # made payment-worker exit on a Postgres restart, and the gateway answer a 500.
    asyncpg.InternalClientError,
)
# What a loop tries again: a connection lost, any other refusal from the server that is not
# about the data (DATA_ERRORS are caught first), or the broker out of reach.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    asyncpg.PostgresError,
    PublishFailed,
)
BASE_S = 0.2
MAX_S = 5.0

Sleep = Callable[[float], Awaitable[None]]


def _log_retrying(what: str, attempt: int, delay: float, error: BaseException | None) -> None:
    """The one ``retrying`` event, whichever of tenacity or ``Backoff`` counts the tries."""
    log.warning(
        "retrying",
        what=what,
        attempt=attempt,
        delay=round(delay, 3),
        error=f"{type(error).__name__}: {error}" if error else None,
    )


def _logger(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        _log_retrying(what, state.attempt_number, state.upcoming_sleep, error)

    return before_sleep


def _retrying(
    what: str,
    stop: StopBaseT,
    on: tuple[type[BaseException], ...],
    base_s: float,
    max_s: float,
    sleep: Sleep,
) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(on),
        wait=wait_random_exponential(multiplier=base_s, max=max_s),
        stop=stop,
        before_sleep=_logger(what),
        sleep=sleep,
        reraise=True,
    )


def until_it_works(
    what: str,
    on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    base_s: float = BASE_S,
    max_s: float = MAX_S,
    sleep: Sleep = asyncio.sleep,
) -> AsyncRetrying:
    """Retry for as long as it takes: for work that must not be skipped (a consumer's batch).

    ``async for attempt in until_it_works("batch"): with attempt: ...``
    """
    return _retrying(what, stop_never, on, base_s, max_s, sleep)


def a_few_times(
    what: str,
    attempts: int,
    on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    base_s: float = BASE_S,
    max_s: float = MAX_S,
    sleep: Sleep = asyncio.sleep,
) -> AsyncRetrying:
    """At most ``attempts`` tries; the last failure is raised as it was."""
    return _retrying(what, stop_after_attempt(attempts), on, base_s, max_s, sleep)


class Backoff:
    """The same pauses for a loop that keeps its own count (it goes on after a failure instead
    of repeating one call): ``await backoff.failed()`` after each failure, ``succeeded()`` after
    a success."""

    def __init__(self, what: str, base_s: float = BASE_S, max_s: float = MAX_S) -> None:
        self._what = what
        self._wait = wait_random_exponential(multiplier=base_s, max=max_s)
        self._failures = 0

    def succeeded(self) -> None:
        self._failures = 0

    async def failed(self, error: BaseException) -> None:
        self._failures += 1
        state = RetryCallState(AsyncRetrying(), None, (), {})
        state.attempt_number = self._failures
        delay = self._wait(state)
        _log_retrying(self._what, self._failures, delay, error)
        await asyncio.sleep(delay)


def for_at_most(
    what: str,
    seconds: float,
    on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    base_s: float = BASE_S,
    max_s: float = MAX_S,
    sleep: Sleep = asyncio.sleep,
) -> AsyncRetrying:
    """Retries until ``seconds`` have passed since the first try (no new try starts after
    that); the last failure is raised as it was. For work that holds a lease: it gives up
    before the lease could pass to another replica."""
    return _retrying(what, stop_after_delay(max(seconds, 0.0)), on, base_s, max_s, sleep)
