"""Verifying the payout callbacks fundhub POSTs to a ``callbackUrl``.

A callback may arrive more than once (the dispatcher retries until it gets a 2xx): handle it
idempotently by ``payId`` and ``bizCode``, and answer 2xx once it is stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from fundhub.client.errors import SignatureMismatch, StaleCallback, UnexpectedPayload
from fundhub.client.signing import matches, webhook_signature

HEADER_TIMESTAMP = "X-Fundhub-Timestamp"
HEADER_SIGNATURE = "X-Fundhub-Signature"
DEFAULT_TOLERANCE_S = 300


def verify_callback(
    webhook_secret: str | Sequence[str],
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The callback's JSON object, once its signature and timestamp check out.

    ``body`` must be the raw request bytes, before any JSON parsing. Several secrets may be
    given while one is being rotated; any of them may match. Raises ``SignatureMismatch``
    (absent or wrong), ``StaleCallback`` (authentic but too old or too far ahead: a replay)
    or ``UnexpectedPayload`` (authentic but not a JSON object).
    """
    keys = [webhook_secret] if isinstance(webhook_secret, str) else list(webhook_secret)
    if not keys or not all(keys):
        raise ValueError("webhook_secret is required")
    if not timestamp_header or not signature_header:
        raise SignatureMismatch(f"missing {HEADER_TIMESTAMP} or {HEADER_SIGNATURE} header")
    timestamp = timestamp_header.strip()
    if not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureMismatch(f"{HEADER_TIMESTAMP} is not Unix seconds")
    # Check every secret (no early exit) so timing does not tell which one is current.
    valid = [matches(webhook_signature(s, timestamp, body), signature_header) for s in keys]
    if not any(valid):
        raise SignatureMismatch(f"{HEADER_SIGNATURE} does not match the body")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise StaleCallback(f"{HEADER_TIMESTAMP} is more than {tolerance_s}s from now")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise UnexpectedPayload("callback body is not JSON") from exc
    if not isinstance(data, dict):
        raise UnexpectedPayload("callback body is not a JSON object")
    return data
