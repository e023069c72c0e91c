"""The depository bank's daily file of the platform's accounts, fetched as the bank serves it
(``docs/bank-daily-files.md``): ``POST /bank/v1/files/daily`` names the file, its size and
SHA-256 and a one-time download URL; its ``GET`` gives the file, checked against both.
"""

from __future__ import annotations

import hashlib
from datetime import date

import aiohttp
import orjson

from fundhub.reconciliation.download_answers import check_downloaded, coded_refusal, json_object
from fundhub.reconciliation.download_http import (
    BAD_FILE,
    MAX_DOWNLOAD_BYTES,
    REFUSED,
    UNAVAILABLE,
    StatementUnavailable,
    check_download_url,
    excerpt,
    exchange,
)

DAILY_FILES_PATH = "/bank/v1/files/daily"
DOWNLOAD_PATH = "/bank/v1/files/download"
FILE_NOT_READY = "FILE_NOT_READY"


async def fetch_bank_file(
    session: aiohttp.ClientSession,
    base_url: str,
    app_id: str,
    day: date,
    *,
    timeout_s: float = 60.0,
) -> tuple[str, bytes]:
    """The file of ``day``: its name as the bank gives it and its bytes (size and SHA-256
    checked), or ``StatementUnavailable`` (NOT_READY before the day is over)."""
    base_url = base_url.rstrip("/")
    body = orjson.dumps({"app_id": app_id, "file_date": day.isoformat()})
    status, _, answer_body = await exchange(
        session,
        "POST",
        base_url + DAILY_FILES_PATH,
        timeout_s=timeout_s,
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    if status >= 500:
        raise StatementUnavailable(UNAVAILABLE, f"HTTP {status}: {excerpt(answer_body)}")
    answer = json_object(answer_body, status)
    if status != 200:
        raise coded_refusal(answer, status, FILE_NOT_READY)
    name, size, sha256, url = (
        answer.get(k) for k in ("file_name", "size", "sha256", "download_url")
    )
    if not (
        isinstance(name, str)
        and isinstance(size, int)
        and isinstance(sha256, str)
        and isinstance(url, str)
    ):
        raise StatementUnavailable(
            REFUSED, "an answer without file_name, size, sha256 or download_url"
        )
    if not 0 <= size <= MAX_DOWNLOAD_BYTES:
        raise StatementUnavailable(BAD_FILE, f"a file of {size} bytes")
    check_download_url(url, base_url)
    status, _, content = await exchange(session, "GET", url, timeout_s=timeout_s, limit=size)
    check_downloaded(status, content)
    if len(content) != size or hashlib.sha256(content).hexdigest() != sha256.lower():
        raise StatementUnavailable(BAD_FILE, "the file is not the size and SHA-256 announced")
    return name, content
