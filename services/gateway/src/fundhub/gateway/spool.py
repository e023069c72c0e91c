"""A request body spooled to a bounded temporary file as it arrives, for the routes that take
files (a statement upload of tens of MiB): memory holds one chunk, not the body.

The cap is enforced while reading (E011 the moment it is passed, nothing read beyond), the
body's SHA-256 is computed on the way (the request's signature covers it, and the same bytes
again are known by it), and the file is unlinked from the start: nothing is left on disk
whatever happens to the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from starlette.requests import Request
from starlette.types import Receive, Scope

from fundhub.common.errors import ErrorCode, FundhubError

STATE_KEY = "spooled_body"
WRITE_BYTES = 1 << 20  # chunks gathered before each write to the file


class ClientGone(Exception):
    """The client disconnected before its request was whole: not bad input, nothing to answer."""


@dataclass
class SpooledBody:
    file: IO[bytes]  # positioned at the body's start
    size: int
    sha256: str

    def close(self) -> None:
        self.file.close()


async def body_chunks(receive: Receive, limit: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The body's chunks as they arrive, each with whether more follow; E011 as soon as the
    body is known to pass ``limit`` bytes, ``ClientGone`` if the client leaves first."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise FundhubError(ErrorCode.PAYLOAD_TOO_LARGE, f"body: more than {limit} bytes")
        more = bool(message.get("more_body", False))
        yield chunk, more
        if not more:
            return


async def spool_body(receive: Receive, limit: int) -> SpooledBody:
    """The whole body in a temporary file, refused with E011 as soon as it passes ``limit``."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller, or here on failure
    try:
        digest = hashlib.sha256()
        pending: list[bytes] = []
        held = size = 0
        async for chunk, more in body_chunks(receive, limit):
            digest.update(chunk)
            pending.append(chunk)
            held += len(chunk)
            size += len(chunk)
            if held >= WRITE_BYTES or not more:
                await asyncio.to_thread(file.write, b"".join(pending))
                pending, held = [], 0
        file.seek(0)
        return SpooledBody(file, size, digest.hexdigest())
    except BaseException:
        file.close()
        raise


def spooled_of(scope: Scope) -> SpooledBody | None:
    found: SpooledBody | None = scope.get("state", {}).get(STATE_KEY)
    return found


def spooled_body(request: Request) -> SpooledBody:
    """The spooled body of a request to a route declared ``spool=True``."""
    found = spooled_of(request.scope)
    if found is None:
        raise RuntimeError("the route is not declared spool=True")
    return found
