"""Structured JSON logs; the correlation id rides in contextvars from HTTP through Kafka."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import structlog

from fundhub.common import tracing

_SECRET_KEYS = frozenset({"secret", "sign", "signature", "private_key", "master_key", "password"})


def _redact(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _dumps(value: object, **_: object) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tracing.add_trace_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Quiet chatty libraries; their warnings still pass.
    for name in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def new_correlation_id() -> str:
    return os.urandom(16).hex()


@contextmanager
def correlation(correlation_id: str) -> Iterator[None]:
    """Bind the correlation id for every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
