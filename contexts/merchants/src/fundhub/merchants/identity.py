"""Identity and licence numbers of mainland China, checked to their check character. Pure.

A merchant's material is reviewed by the depository, which refuses a number that cannot exist;
checking the check character here refuses a typing error at once, with the field named (E001),
instead of a rejection by the bank seconds later.

- Resident identity card (居民身份证, GB 11643-1999): 17 digits and a check character, 0-9 or X,
  by ISO 7064 MOD 11-2; digits 7-14 are the date of birth.
- Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters of
  ``0-9 A-H J-N P-R T U W-Y``; the last is a check character, modulo 31 over weights 3^i mod 31.
"""

from __future__ import annotations

import re
from datetime import date

_RESIDENT_ID = re.compile(r"^[1-9][0-9]{16}[0-9X]$")
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC = re.compile(rf"^[{USCC_ALPHABET}]{{18}}$")
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
# Mainland Travel Permits for Hong Kong, Macao and Taiwan residents: a letter and 8 digits
# (H/M, Hong Kong and Macao), or 8 digits (Taiwan).
TRAVEL_PERMIT = re.compile(r"^(?:[HM][0-9]{8}|[0-9]{8})$")


def resident_id_check(first17: str) -> str:
    """The check character of a resident identity number's first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


def is_resident_id(value: str) -> bool:
    if not _RESIDENT_ID.fullmatch(value):
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return born.year >= 1900 and value[17] == resident_id_check(value[:17])


def uscc_check(first17: str) -> str:
    """The check character of a unified social credit code's first 17 characters."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_uscc(value: str) -> bool:
    return bool(_USCC.fullmatch(value)) and value[17] == uscc_check(value[:17])
