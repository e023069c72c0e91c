"""The bank's refusal of a request: what every one of its APIs answers to a request it will not
take (a 4xx, or a refused item of a batch). No I/O: a context's domain module derives its own
refusal from it, and says there what a refusal means for its requests.

Every API of the bank words a refusal alike, ``{"reason": ...}`` or ``{"error": ...}``; a
refusal without either (a proxy's page) keeps the text it came with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self


class Refused(Exception):
    """The bank refused the request itself: its HTTP status (or a batch item's ``code``) and the
    reason it gave, at most ``reason_chars`` of it (each context keeps as much as it stores)."""

    reason_chars: ClassVar[int] = 256

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason

    @classmethod
    def from_answer(cls, status_code: int, parsed: Any, text: str) -> Self:
        """The refusal ``parsed`` (the answer's JSON, or ``None``) gives, else ``text``."""
        if isinstance(parsed, Mapping):
            for key in ("reason", "error"):
                value = parsed.get(key)
                if isinstance(value, str) and value:
                    return cls(status_code, value[: cls.reason_chars])
        return cls(status_code, text[: cls.reason_chars] or "no reason given")
