"""How the statement fetchers read what a source answered, the same for each: the answer a
JSON object, a refusal told apart from "not published yet" (the scheduler retries only that
one), a download that did not come."""

from __future__ import annotations

from typing import Any

import orjson

from fundhub.reconciliation.download_http import (
    NOT_READY,
    REFUSED,
    UNAVAILABLE,
    StatementUnavailable,
    excerpt,
)

_MESSAGE = 200


def json_object(body: bytes, status: int) -> dict[str, Any]:
    """An answer that is not a JSON object is the source's trouble, not a refusal: UNAVAILABLE."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StatementUnavailable(UNAVAILABLE, f"HTTP {status}: not JSON") from None
    if not isinstance(document, dict):
        raise StatementUnavailable(UNAVAILABLE, f"HTTP {status}: not a JSON object")
    return document


def refusal(code: str, message: str, not_ready_code: str) -> StatementUnavailable:
    """The source's error ``code``: NOT_READY when it is the source's "not published yet"
    (``not_ready_code``), else REFUSED."""
    return StatementUnavailable(
        NOT_READY if code == not_ready_code else REFUSED, f"{code} {message[:_MESSAGE]}"
    )


def coded_refusal(answer: dict[str, Any], status: int, not_ready_code: str) -> StatementUnavailable:
    """A refusal told in the answer's ``code`` and ``message`` (the HTTP status when no code)."""
    code = str(answer.get("code") or f"HTTP_{status}")
    return refusal(code, str(answer.get("message") or ""), not_ready_code)


def check_downloaded(status: int, content: bytes) -> None:
    if status != 200:
        raise StatementUnavailable(UNAVAILABLE, f"download: HTTP {status}: {excerpt(content)}")
