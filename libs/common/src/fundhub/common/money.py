"""Money as integer minor units with an ISO 4217 currency; never a float."""

from __future__ import annotations

import re

# Currencies fundhub settles in, with their minor-unit exponent.
CURRENCIES: dict[str, int] = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2}
# Wire aliases: the bank writes RMB for the renminbi.
_ALIASES = {"RMB": "CNY"}
_MINOR_UNITS = re.compile(r"^(0|[1-9][0-9]*)$")


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
