"""HMAC-SHA256 signatures as the gateway computes them (README.md, "Signing requests").

Kept inside the client on purpose: the package installs alone, without the server's libraries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from urllib.parse import quote

HEADER_KEY = "X-Api-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"


def percent_encode(text: str) -> str:
    """RFC 3986: A-Z a-z 0-9 - . _ ~ kept, everything else %XX (upper case) of its UTF-8."""
    return quote(text, safe="~", encoding="utf-8", errors="strict")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Encoded ``k=v`` pairs sorted by name then value (on the encoded text), joined by ``&``."""
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def string_to_sign(
    method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Six lines: method, path, canonical query, timestamp, nonce, hex SHA-256 of the body."""
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, query, timestamp, nonce, body_hash))


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def request_signature(
    secret: str, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The ``X-Signature`` of one request; ``query`` is already canonical."""
    text = string_to_sign(method, path, query, timestamp, nonce, body)
    return hmac_hex(secret, text.encode("utf-8"))


def signed_headers(
    key_id: str,
    secret: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four auth headers; a fresh timestamp and nonce unless given (tests give them)."""
    ts = timestamp if timestamp is not None else str(int(time.time()))
    once = nonce if nonce is not None else secrets.token_hex(16)
    return {
        HEADER_KEY: key_id,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: once,
        HEADER_SIGNATURE: request_signature(secret, method, path, query, ts, once, body),
    }


def matches(expected_hex: str, given: str) -> bool:
    """Constant-time comparison of our hex digest with an untrusted header value."""
    return hmac.compare_digest(expected_hex.encode("ascii"), given.strip().lower().encode("utf-8"))


def response_signature_valid(secret: str, body: bytes, given: str) -> bool:
    """Every gateway answer is signed over its raw body with the key's secret."""
    return matches(hmac_hex(secret, body), given)


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Callbacks sign ``timestamp + "." + body`` so a captured body cannot be re-dated."""
    return hmac_hex(secret, timestamp.encode("utf-8") + b"." + body)
