"""Identifiers as UUID strings, made without building ``uuid.UUID`` objects.

They are minted for every message and journal entry on the hot paths, where ``uuid.uuid4()`` and
``uuid.uuid5()`` plus ``str()`` cost several microseconds each. The strings are the same as the
standard library's (``tests/unit/test_ids.py`` holds them to it).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid

_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _format(raw: bytes, version: int) -> str:
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | (version << 4)
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_uuid() -> str:
    """A version-4 UUID, as ``str(uuid.uuid4())``."""
    return _format(os.urandom(16), 4)


def time_ordered_uuid() -> str:
    """A version-7 UUID (RFC 9562): the Unix time in milliseconds, then 74 random bits.

    For primary keys of append-mostly tables (journal entries): ids made close in time sort
    close together, so inserts touch the right-hand pages of the index instead of a random
    page of a large one. The time shows in the id, which is no secret for a journal entry.
    """
    milliseconds = time.time_ns() // 1_000_000
    return _format(milliseconds.to_bytes(6, "big") + os.urandom(10), 7)


def content_uuid(name: str) -> str:
    """A version-5 UUID in the URL namespace, as ``str(uuid.uuid5(uuid.NAMESPACE_URL, name))``."""
    # surrogatepass: a lone surrogate (valid in a JSON string) must not crash the caller.
    digest = hashlib.sha1(_URL_NAMESPACE + name.encode("utf-8", "surrogatepass")).digest()
    return _format(digest, 5)


def is_canonical_uuid(text: str) -> bool:
    """Lower-case hyphenated form, the only one the services write."""
    return _CANONICAL.fullmatch(text) is not None
