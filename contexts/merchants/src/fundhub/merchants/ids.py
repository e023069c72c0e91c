"""The merchants context's identifiers: time-ordered, 26 characters of Crockford base32.

A merchant's id and its ledger account's id share one value (``mch_…`` and ``mac_…``): the
account is the merchant's and no other's, and its id must fit the balance API's account ids
(1 to 32 of ``0-9 A-Z a-z _ -``), which a UUID with a prefix would not. The value is the
UUIDv7 layout (48 bits of Unix milliseconds, 80 random bits) written as ULIDs are, so ids made
close in time sort close together (append-mostly indexes) and none is guessable from another.
"""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's: no i, l, o, u
_LENGTH = 26
MERCHANT_PREFIX = "mch_"
ACCOUNT_PREFIX = "mac_"
REQUEST_PREFIX = "mrq_"
BINDING_PREFIX = "msa_"
# What a merchantId in a path may be: ours, or an id another context's test wrote directly.
# Anything else is answered as not found without a lookup.
MERCHANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _time_ordered() -> str:
    value = int.from_bytes((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    chars = []
    for _ in range(_LENGTH):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_merchant_id() -> str:
    return MERCHANT_PREFIX + _time_ordered()


def account_id_of(merchant_id: str) -> str:
    """The ledger account of a merchant this context created."""
    if not merchant_id.startswith(MERCHANT_PREFIX):
        raise ValueError("not a merchant id of ours")
    return ACCOUNT_PREFIX + merchant_id.removeprefix(MERCHANT_PREFIX)


def new_request_id() -> str:
    """A request to the depository: its idempotency key there, so a retry is never a second
    request (it fits the bank's request ids, 1 to 64 of ``A-Z a-z 0-9 . _ : -``)."""
    return REQUEST_PREFIX + _time_ordered()


def new_binding_id() -> str:
    """A settlement account binding: one per account a merchant asks to bind."""
    return BINDING_PREFIX + _time_ordered()
