"""A signed upstream client for tests: builds X-Api-Key / X-Timestamp / X-Nonce / X-Signature."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

import httpx

from fundhub.common.signing import sign_api_request


def signed_headers(
    key_id: str,
    secret: str,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    signature = sign_api_request(secret, method, path, query or [], ts, nonce, body)
    return {"X-Api-Key": key_id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": signature}


async def signed_get(
    client: httpx.AsyncClient,
    key_id: str,
    secret: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    **overrides: object,
) -> httpx.Response:
    headers = signed_headers(key_id, secret, "GET", path, query, b"", **overrides)  # type: ignore[arg-type]
    url = path + ("?" + urlencode(query) if query else "")
    return await client.get(url, headers=headers)
