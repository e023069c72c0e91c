"""Opening a statement's bytes before its lines are read: gzip and zip taken apart with bounds
(a small archive must not expand without end), text decoded strictly in the source's encoding.

Each refusal is a ``StatementRejected`` naming the file; a decoding error names its line.
"""

from __future__ import annotations

import codecs
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO

from fundhub.reconciliation.statement import StatementRejected, StatementTooLarge

# The largest statement read: 1,000,000 lines of a channel's bill are about 300 MB of text.
MAX_TEXT_BYTES = 1 << 30
# The longest line read: a bill's line is a few hundred bytes; a file with no line end (a
# zip bomb of one value, garbage) must not grow one line without end.
MAX_LINE_CHARS = 1 << 16
# A member unpacked to more than this many times its packed size is not a bill (CSV text packs
# about 5 to 10 times; a bomb of one repeated byte about 1,000 times): refused while unpacking.
MAX_PACK_RATIO = 100
# What a small member may unpack to whatever its ratio (a few lines pack badly).
RATIO_FLOOR_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, file: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The content of a gzip member, refused when truncated, corrupt or larger than ``limit``."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise StatementRejected(file, 0, f"not a readable gzip file ({exc})") from None
    if len(out) > limit:
        raise StatementTooLarge(file, 0, f"larger than {limit} bytes once unpacked")
    if not inflater.eof:
        raise StatementRejected(file, 0, "truncated gzip file")
    if inflater.unused_data:
        raise StatementRejected(file, 0, "data after the end of the gzip file")
    return out


def inflated(chunks: Iterable[bytes], file: str, limit: int = MAX_TEXT_BYTES) -> Iterator[bytes]:
    """The bytes as they come, gunzipped on the way when they start with gzip's magic (as
    ``gunzip``, bounded by ``limit`` and by ``MAX_PACK_RATIO`` times the bytes taken in so
    far, a truncated or trailing-data file refused at its end)."""
    it = iter(chunks)
    first = b""
    for chunk in it:  # enough bytes to tell gzip's magic
        first += chunk
        if len(first) >= len(GZIP_MAGIC):
            break
    if first[:2] != GZIP_MAGIC:
        if first:
            yield first
        yield from it
        return
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out_total = in_total = 0
    for chunk in _chained(first, it):
        if inflater.eof:
            if chunk:
                raise StatementRejected(file, 0, "data after the end of the gzip file")
            continue
        in_total += len(chunk)
        bound = min(limit, max(RATIO_FLOOR_BYTES, in_total * MAX_PACK_RATIO))
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, 1 << 20)
            except zlib.error as exc:
                raise StatementRejected(file, 0, f"not a readable gzip file ({exc})") from None
            out_total += len(out)
            if out_total > bound:
                raise StatementTooLarge(
                    file, 0, f"unpacks to more than {bound} bytes (from {in_total}): not a bill"
                )
            if out:
                yield out
            if inflater.eof:
                if inflater.unused_data:
                    raise StatementRejected(file, 0, "data after the end of the gzip file")
                break
            data = inflater.unconsumed_tail
    if not inflater.eof:
        raise StatementRejected(file, 0, "truncated gzip file")


def _chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def unpacked(
    member: IO[bytes], packed: int, file: str, limit: int = MAX_TEXT_BYTES
) -> Iterator[bytes]:
    """A zip member's bytes as they are unpacked, refused once they pass ``limit`` or
    ``MAX_PACK_RATIO`` times their ``packed`` size (a zip bomb stops here, whatever its entry
    declares), or when the member is cut short or corrupt (its CRC is checked at its end)."""
    bound = min(limit, max(RATIO_FLOOR_BYTES, packed * MAX_PACK_RATIO))
    total = 0
    while True:
        try:
            chunk = member.read(1 << 20)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
            raise StatementRejected(file, 0, f"truncated or corrupt in the zip ({exc})") from None
        if not chunk:
            return
        total += len(chunk)
        if total > bound:
            raise StatementTooLarge(
                file, 0, f"unpacks to more than {bound} bytes (from {packed}): not a bill"
            )
        yield chunk


def text_lines(chunks: Iterable[bytes], encoding: str, file: str) -> Iterator[str]:
    """The lines of a text read chunk by chunk, decoded strictly (a byte not of ``encoding``
    refuses the file, its line named): ``\\n`` or ``\\r\\n`` ended, the last end optional, a
    leading BOM dropped; another line separator inside a value stays in its line (and is
    refused there).
    A line longer than ``MAX_LINE_CHARS`` is refused: memory stays that of a few chunks."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    carry = ""
    line_no = 0  # complete lines given so far
    first = True
    for chunk in chunks:
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = line_no + chunk.count(b"\n", 0, max(0, exc.start)) + 1
            raise StatementRejected(file, at, f"not {encoding} text") from None
        if first and text:
            first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if carry:
            text = carry + text
        held_cr = False
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if text.endswith("\r"):  # its \n may be the next chunk's first byte
                held_cr, text = True, text[:-1]
        lines = text.split("\n")
        carry = lines.pop() + ("\r" if held_cr else "")
        if len(carry) > MAX_LINE_CHARS:
            raise StatementRejected(
                file, line_no + len(lines) + 1, f"a line longer than {MAX_LINE_CHARS} characters"
            )
        line_no += len(lines)
        yield from lines
    try:
        rest = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise StatementRejected(file, line_no + 1, f"not {encoding} text") from None
    carry += rest
    if carry:
        yield carry
