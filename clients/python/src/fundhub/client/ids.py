"""Idempotency keys for payouts."""

from __future__ import annotations

import secrets
import time


def new_request_id() -> str:
    """A fresh ``requestId``: ``req-`` + Unix milliseconds + 64 random bits, 34 characters.

    Time first so ids sort roughly by creation in logs; the random part makes collisions
    between processes negligible. Keep it with the payout's origin record *before* sending:
    resending with the same id is what makes a retry safe.
    """
    return f"req-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(8)}"
