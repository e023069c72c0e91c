"""``application/x-www-form-urlencoded`` values decoded: ``+`` a space, ``%XX`` a byte of UTF-8.

``urllib.parse.unquote`` splits and joins its argument in Python for every escape; the channels'
notifications (Alipay's forms: a signature and several amounts and times escaped in each) are
decoded twice at the callers' full rate, once to verify and once for the audit entry. Here the
escapes are looked up whole, in one table.
"""

from __future__ import annotations

# Every "%XX" with its two hex digits in either case, to its byte.
_ESCAPES: dict[bytes, bytes] = {
    b"%" + f"{hi}{lo}".encode(): bytes([int(hi + lo, 16)])
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}


def form_value(text: str, errors: str = "strict") -> str:
    """``text`` decoded as ``unquote(text.replace("+", " "), errors=errors)`` decodes it: a
    malformed escape stays as it is; UnicodeDecodeError for bad UTF-8 when ``errors`` is strict."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    pieces = text.encode("utf-8").split(b"%")
    decoded = [pieces[0]]
    for piece in pieces[1:]:
        byte = _ESCAPES.get(b"%" + piece[:2])
        if byte is None:
            decoded.append(b"%" + piece)
        else:
            decoded.append(byte)
            decoded.append(piece[2:])
    return b"".join(decoded).decode("utf-8", errors)
