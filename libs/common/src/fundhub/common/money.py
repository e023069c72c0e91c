"""Money as integer minor units with an ISO 4217 currency; never a float."""

from __future__ import annotations

import re

# Currencies fundhub settles in, with their minor-unit exponent.
CURRENCIES: dict[str, int] = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2}
# Wire aliases: the bank writes RMB for the renminbi.
_ALIASES = {"RMB": "CNY"}
_MINOR_UNITS = re.compile(r"^(0|[1-9][0-9]*)$")
# Yuan as the channels write it (Alipay's total_amount, refund_fee): ASCII digits, no sign, no
# exponent, no spaces, at most two decimals. 14 integer digits keep fen within 16 digits.
_YUAN = re.compile(r"(0|[1-9][0-9]{0,13})(?:\.([0-9]{1,2}))?")


class MoneyError(ValueError):
    pass


def normalize_currency(code: str) -> str:
    """Map a wire currency code to ISO 4217 (``RMB`` -> ``CNY``); refuse unknown ones."""
    iso = _ALIASES.get(code.upper(), code.upper())
    if iso not in CURRENCIES:
        raise MoneyError(f"unknown currency {code!r}")
    return iso


def parse_minor_units(text: str, max_digits: int = 16) -> int:
    """Parse a non-negative integer string of minor units (the bank's amounts are strings)."""
    if not _MINOR_UNITS.fullmatch(text) or len(text) > max_digits:
        raise MoneyError(f"not a non-negative integer amount of at most {max_digits} digits")
    return int(text)


def parse_yuan(text: str) -> int:
    """Exact fen of a yuan string: ``"12.3"`` and ``"12.30"`` are 1230; ``"1e3"``, ``"-1"``,
    ``"12.345"``, ``" 1"``, ``"1."`` and ``"01"`` are refused. Digits, never a float: a float
    turns 0.29 yuan into 28.999… fen."""
    match = _YUAN.fullmatch(text) if text.isascii() else None
    if match is None:
        raise MoneyError("not an amount in yuan with at most two decimals")
    whole, decimals = match.groups()
    return int(whole) * 100 + int((decimals or "").ljust(2, "0"))


def format_yuan(fen: int) -> str:
    """``1230`` -> ``"12.30"``: how the channels take amounts in yuan."""
    if fen < 0:
        raise MoneyError("a negative amount has no yuan form here")
    return f"{fen // 100}.{fen % 100:02d}"
