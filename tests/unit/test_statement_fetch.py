"""The fetch adapters' own guards, against a bank that misbehaves (a small aiohttp server): a
file other than announced, a download URL elsewhere, a body beyond its bound, a day not ready.
The happy paths run against the simulators (tests/integration/test_statement_downloads.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import pytest
from aiohttp import web
from support.receivers import serving

from fundhub.reconciliation.bank_file_http import DAILY_FILES_PATH, fetch_bank_file
from fundhub.reconciliation.download_http import (
    BAD_FILE,
    NOT_READY,
    REFUSED,
    StatementUnavailable,
    check_download_url,
)

DAY = date(2026, 11, 30)
CONTENT = b"H|FUNDS|APP|20261130|20261201000000|1.0\r\nT|0|0|0|0|0|0|0|0\r\n"


def test_a_download_url_stays_on_the_source_unless_https_elsewhere_is_allowed() -> None:
    check_download_url("http://127.0.0.1:9/x?t=1", "http://127.0.0.1:9")
    check_download_url("https://bills.example/x", "https://gw.example", any_https=True)
    for url, https_ok in [
        ("http://127.0.0.1:10/x", False),
        ("https://evil.example/x", False),
        ("http://evil.example/x", True),
        ("file:///etc/passwd", True),
        ("/relative", True),
    ]:
        with pytest.raises(StatementUnavailable) as caught:
            check_download_url(url, "http://127.0.0.1:9", any_https=https_ok)
        assert caught.value.code == REFUSED


def bank(
    answer: dict[str, object] | None, content: bytes = CONTENT, status: int = 200
) -> web.Application:
    app = web.Application()

    async def daily(request: web.Request) -> web.Response:
        if answer is None:
            return web.json_response({"code": "FILE_NOT_READY", "message": "later"}, status=404)
        body = dict(answer)
        body["download_url"] = str(body["download_url"]).replace("BASE", f"http://{request.host}")
        return web.json_response(body, status=status)

    async def download(_: web.Request) -> web.Response:
        return web.Response(body=content)

    app.router.add_post(DAILY_FILES_PATH, daily)
    app.router.add_get("/file", download)
    return app


def offer(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "file_name": "FUNDS_APP_20261130.txt",
        "size": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "download_url": "BASE/file",
    }
    body.update(changes)
    return body


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_the_announced_file_is_returned(session: aiohttp.ClientSession) -> None:
    async with serving(bank(offer())) as url:
        assert await fetch_bank_file(session, url, "APP", DAY) == (
            "FUNDS_APP_20261130.txt",
            CONTENT,
        )


@pytest.mark.parametrize(
    ("answer", "content", "code"),
    [
        (None, CONTENT, NOT_READY),
        (offer(sha256="0" * 64), CONTENT, BAD_FILE),
        (offer(), CONTENT[:-1], BAD_FILE),
        (offer(), CONTENT + b"more", BAD_FILE),
        (offer(download_url="http://127.0.0.1:9/file"), CONTENT, REFUSED),
        (offer(size="12"), CONTENT, REFUSED),
        (offer(size=-1), CONTENT, BAD_FILE),
    ],
)
async def test_anything_but_the_announced_file_is_refused(
    session: aiohttp.ClientSession, answer: dict[str, object] | None, content: bytes, code: str
) -> None:
    async with serving(bank(answer, content)) as url:
        with pytest.raises(StatementUnavailable) as caught:
            await fetch_bank_file(session, url, "APP", DAY)
    assert caught.value.code == code
