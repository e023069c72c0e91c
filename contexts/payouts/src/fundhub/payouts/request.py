"""A supplier payout request as the platform sends it: parsed strictly, normalised, fingerprinted.

Pure, no I/O. The gateway parses the raw body here so that every refusal names its field (E001),
and the idempotency check compares fingerprints: the same request sent again, in any key order or
whitespace, has the same fingerprint; a change to any field gives another one.

The wire is camelCase JSON. Types are strict: ``amount`` must be a JSON integer (a bool, a float
such as ``1.0`` or a string is refused), because a payout amount that was coerced is one nobody
asked for. Only the wire (camelCase) names are accepted in a body; Python code may construct the
model with the snake_case field names.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError

from fundhub.common.json_body import (
    InvalidBody,
    StrictBody,
    canonical_json,
    first_error,
    has_control,
    parse_object,
)
from fundhub.common.money import CURRENCIES, MoneyError, normalize_currency
from fundhub.webhooks.destinations import CallbackAddresses, check_url_shape

MAX_AMOUNT = 10**16 - 1  # at most 16 digits of minor units
EXTENSION_MAX_BYTES = 4096  # of the extension's canonical JSON, UTF-8
# Bounds on the body's shape, checked while it is parsed (before pydantic sees it): 4 KiB of
# extension holds at most a few hundred keys, and nothing of ours nests deeper than this.
PAY_ID_PREFIX = "PAY"
PAY_ID_SEQUENCE_DIGITS = 10
PAY_ID_PATTERN = re.compile(r"^PAY[0-9]{8}[0-9]{10}$")

_REQUEST_ID = r"^[A-Za-z0-9._:-]+$"
# A requestId as it can ever be stored: what a lookup by requestId may be asked for.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ACCOUNT_ID = r"^[0-9A-Za-z_-]+$"
_PAYEE_ACCOUNT_NO = r"^[0-9A-Za-z]+$"

_TEXT = "characters, not blank, without control characters"
_MESSAGES: dict[str, str] = {
    "requestId": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "supplierId": f"must be 1 to 32 {_TEXT}",
    "payerAccountId": "must be 1 to 32 characters of A-Z a-z 0-9 _ -",
    "amount": "must be a positive integer of at most 16 digits",
    "currency": f"must be one of {', '.join(sorted(CURRENCIES))} (RMB is read as CNY)",
    "payee": "must be an object with accountName, accountNo and bankName",
    "payee.accountName": f"must be 1 to 100 {_TEXT}",
    "payee.accountNo": "must be 1 to 34 characters of A-Z a-z 0-9",
    "payee.bankName": f"must be 1 to 120 {_TEXT}",
    "purpose": "must be a string of at most 200 characters without control characters",
    "callbackUrl": "must be an http(s) URL of at most 512 ASCII characters, without user info",
    "extension": f"must be a JSON object of at most {EXTENSION_MAX_BYTES} bytes",
}


class InvalidPayout(InvalidBody):
    """A refused payout request. ``str(exc)`` is the wire ``msg``: ``"<field>: <message>"``."""


# --- field checks (pydantic runs them after its strict type and length checks) ----------------


def _plain_text(value: str) -> str:
    """Names go to the bank as they are: refuse blank ones and control characters."""
    if not value.strip() or has_control(value):
        raise ValueError("blank or control characters")
    return value


def _free_text(value: str) -> str:
    if has_control(value):
        raise ValueError("control characters")
    return value


def _currency(value: str) -> str:
    if value != value.upper():
        raise ValueError("not an upper-case currency code")
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


def _callback_url(value: str) -> str:
    return check_url_shape(value)


def _extension(value: dict[str, Any]) -> dict[str, Any]:
    if len(canonical_json(value)) > EXTENSION_MAX_BYTES:
        raise ValueError("too large")
    return value


PlainText = Annotated[str, AfterValidator(_plain_text)]


class Payee(StrictBody):
    """Who receives the money, as the bank needs it."""

    account_name: Annotated[PlainText, Field(min_length=1, max_length=100)]
    account_no: Annotated[str, Field(min_length=1, max_length=34, pattern=_PAYEE_ACCOUNT_NO)]
    bank_name: Annotated[PlainText, Field(min_length=1, max_length=120)]


class PayoutRequest(StrictBody):
    """``POST /v1/payouts``, validated; ``currency`` is normalised (``RMB`` -> ``CNY``)."""

    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=_REQUEST_ID)]
    supplier_id: Annotated[PlainText, Field(min_length=1, max_length=32)]
    payer_account_id: Annotated[str, Field(min_length=1, max_length=32, pattern=_ACCOUNT_ID)]
    amount: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    currency: Annotated[str, AfterValidator(_currency)]
    payee: Payee
    purpose: Annotated[str, Field(max_length=200), AfterValidator(_free_text)] | None = None
    callback_url: Annotated[str, Field(max_length=512), AfterValidator(_callback_url)] | None = None
    extension: Annotated[dict[str, Any], AfterValidator(_extension)] | None = None


PUBLIC_ONLY = CallbackAddresses()
CALLBACK_NOT_ALLOWED = (
    "must not point to a loopback, private, link-local, multicast or reserved address "
    "(in any notation) or to localhost"
)


def parse_payout_request(raw: bytes, callbacks: CallbackAddresses | None = None) -> PayoutRequest:
    """Parse a raw ``POST /v1/payouts`` body; raises InvalidPayout naming the first bad field.

    ``callbacks`` is where a callbackUrl may point; by default public addresses only, as in
    every environment unless the operator allows a range (``FUNDHUB_CALLBACK_ALLOW_CIDRS``).
    """
    try:
        document = parse_object(raw)
    except InvalidBody as exc:
        raise InvalidPayout(exc.field, exc.message) from None
    try:
        request = PayoutRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        refusal = first_error(exc, _MESSAGES, opaque=("extension",))
        raise InvalidPayout(refusal.field, refusal.message) from None
    if request.callback_url is not None:
        host = urlsplit(request.callback_url).hostname or ""
        if (callbacks or PUBLIC_ONLY).host_refusal(host) is not None:
            raise InvalidPayout("callbackUrl", CALLBACK_NOT_ALLOWED)
    return request


def new_pay_id(day: date, sequence: int) -> str:
    """``PAY`` + yyyymmdd + the sequence zero-padded to 10 digits, e.g. PAY202506010000000042."""
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise TypeError("sequence must be an int")
    if not 0 <= sequence < 10**PAY_ID_SEQUENCE_DIGITS:
        raise ValueError(f"sequence {sequence} does not fit {PAY_ID_SEQUENCE_DIGITS} digits")
    return f"{PAY_ID_PREFIX}{day:%Y%m%d}{sequence:0{PAY_ID_SEQUENCE_DIGITS}d}"
