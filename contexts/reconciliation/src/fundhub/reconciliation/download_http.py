"""What the three statement fetchers share: one bounded HTTP exchange, the check that a
download URL stays where it should, and the one error they raise.

A fetcher returns a day's file as bytes, checked as far as its source allows (WeChat Pay's
SHA1, the bank's SHA-256 and size); the scheduler that calls it retries later on
``StatementUnavailable`` (``code`` ``NOT_READY`` before the source has published the day).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

NOT_READY = "NOT_READY"
UNAVAILABLE = "UNAVAILABLE"
REFUSED = "REFUSED"
BAD_FILE = "BAD_FILE"
MAX_DOWNLOAD_BYTES = 1 << 30
MAX_ANSWER_BYTES = 64 * 1024
_EXCERPT = 200


class StatementUnavailable(Exception):
    """No file this time: ``code`` says why (NOT_READY, UNAVAILABLE, REFUSED, BAD_FILE)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout_s: float,
    limit: int = MAX_ANSWER_BYTES,
    headers: dict[str, str] | None = None,
    data: bytes | dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and at most ``limit`` bytes of body, or
    ``StatementUnavailable`` (UNAVAILABLE) on a timeout, a transport error or a larger body."""
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            declared = response.content_length
            if declared is not None and declared > limit:
                raise StatementUnavailable(BAD_FILE, f"{declared} bytes, more than {limit}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > limit:
                    raise StatementUnavailable(BAD_FILE, f"more than {limit} bytes")
            answer_headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, answer_headers, bytes(body)
    except TimeoutError:
        raise StatementUnavailable(UNAVAILABLE, f"no answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise StatementUnavailable(UNAVAILABLE, f"transport error ({type(exc).__name__})") from None


def excerpt(body: bytes) -> str:
    return body[:_EXCERPT].decode("utf-8", "replace")


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def check_download_url(url: str, allowed_origin: str, *, any_https: bool = False) -> None:
    """A download URL must be on the source's own origin (where our signed request may go), or
    any ``https`` host when the source hands out another one (Alipay's bill centre)."""
    scheme, host = origin(url)
    if not host or scheme not in ("http", "https"):
        raise StatementUnavailable(REFUSED, "the download URL is not an http(s) URL")
    if (scheme, host) == origin(allowed_origin):
        return
    if any_https and scheme == "https":
        return
    raise StatementUnavailable(REFUSED, f"the download URL leaves {allowed_origin}")
