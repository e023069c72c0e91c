"""A light HTTP/1.1 load client for the benchmarks: keep-alive connections, requests as bytes.

The benchmarks run on the same two cores as the system they measure, so the client must cost as
little as possible: aiohttp spends about 0.3 ms of CPU a request here, a third of what the
gateway spends. Like wrk, this client writes whole requests built before the clock starts (or
just before sending) and parses answers with httptools (the C parser uvicorn uses); one request
at a time per connection, no pipelining.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import cast

import httptools

from fundhub.common.signing import sign_api_request


class LoadConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int) -> LoadConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body, self._body = b"".join(self._body), []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), body))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write one whole request; return (status, body) of its answer."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def post_bytes(
    host: str, path: str, body: bytes, headers: Mapping[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def signed_post_bytes(host: str, path: str, body: bytes, key_id: str, secret: str) -> bytes:
    """A POST to the API signed with the key (HMAC over method, path, time, a fresh nonce and
    the body), as a whole request: build it just before it is sent (the time is checked)."""
    ts, nonce = str(int(time.time())), secrets.token_hex(16)
    headers = {
        "X-Api-Key": key_id,
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Signature": sign_api_request(secret, "POST", path, [], ts, nonce, body),
    }
    return post_bytes(host, path, body, headers)
