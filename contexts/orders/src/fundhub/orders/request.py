"""An order and a refund as the platform sends them: parsed strictly, checked, fingerprinted.

Pure, no I/O. Every refusal names its field (``InvalidOrder``: E001), except the split rule,
which has a code of its own (``SplitMismatch``: E031_SPLIT_MISMATCH). Amounts must be JSON
integers of fen (``1.0``, ``"100"`` and ``true`` are refused): an amount that was coerced is
one nobody asked for. The fingerprint is SHA-256 of the canonical JSON, so the same request in
another key order or whitespace is the same request, and any change to a field is another.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError

from fundhub.channels.events import Channel
from fundhub.common.json_body import (
    InvalidBody,
    StrictBody,
    has_control,
    parse_object,
    shown,
)
from fundhub.common.money import MoneyError, normalize_currency
from fundhub.orders.splits import MAX_RECEIVERS, check_split
from fundhub.webhooks.destinations import CallbackAddresses, InvalidHost, normalise_host

MAX_AMOUNT = 10**16 - 1  # at most 16 digits of fen
# The channels take renminbi only (WeChat Pay's amount.currency, Alipay's trade currency).
ORDER_CURRENCY = "CNY"
# An order's and a refund's id towards the platform: its idempotency key.
ORDER_NO_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Ours, towards the channels and the depository (WeChat Pay's out_trade_no takes 6 to 32 of
# A-Z a-z 0-9 _ - | *): a prefix, the day, a sequence number.
ORDER_ID_PREFIX = "ORD"
REFUND_ID_PREFIX = "RFD"
_SEQUENCE_DIGITS = 10
_NO = r"^[A-Za-z0-9._:-]+$"
_MERCHANT_ID = r"^[A-Za-z0-9._:-]+$"

_TEXT = "characters, not blank, without control characters"
_MESSAGES: dict[str, str] = {
    "orderNo": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "refundNo": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "amount": "must be a positive integer of fen, at most 16 digits",
    "platformFee": "must be a non-negative integer of fen, at most 16 digits",
    "currency": f"must be {ORDER_CURRENCY} (RMB is read as CNY): the channels take renminbi",
    "channel": "must be WECHATPAY or ALIPAY",
    "description": f"must be 1 to 127 {_TEXT}",
    "reason": "must be at most 80 characters without control characters",
    "splits": f"must be a list of 1 to {MAX_RECEIVERS} receivers, each merchantId once",
    "splits.merchantId": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "splits.amount": "must be a positive integer of fen, at most 16 digits",
    "notifyUrl": "must be an http(s) URL of at most 512 ASCII characters, without user info",
}
NOTIFY_NOT_ALLOWED = (
    "must not point to a loopback, private, link-local, multicast or reserved address "
    "(in any notation) or to localhost"
)
PUBLIC_ONLY = CallbackAddresses()


class InvalidOrder(InvalidBody):
    """A refused request. ``str(exc)`` is the wire ``msg``: ``"<field>: <message>"``."""


def _plain_text(value: str) -> str:
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
        iso = normalize_currency(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
    if iso != ORDER_CURRENCY:
        raise ValueError("not renminbi")
    return iso


def _url_shape(value: str) -> str:
    """An http(s) URL with a host that is a name or an address, no credentials (they would end
    up in logs); where it may point is ``webhooks.destinations``' rule, checked after."""
    if not value.isascii() or any(ch.isspace() or has_control(ch) for ch in value):
        raise ValueError("not a plain ASCII URL")
    parts = urlsplit(value)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        raise ValueError("not an http(s) URL with a host and no user info")
    _ = parts.port  # ValueError for a port that is not a number in range
    try:
        normalise_host(host)
    except InvalidHost:
        raise ValueError("not a host name or address") from None
    return value


Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
Fee = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
MerchantId = Annotated[str, Field(min_length=1, max_length=64, pattern=_MERCHANT_ID)]
NotifyUrl = Annotated[str, Field(max_length=512), AfterValidator(_url_shape)]


class Split(StrictBody):
    """A receiver of the order and its share, in fen."""

    merchant_id: MerchantId
    amount: Amount


class RefundSplit(StrictBody):
    """A receiver's part of a refund; 0 leaves that receiver out of it."""

    merchant_id: MerchantId
    amount: Fee


class OrderRequest(StrictBody):
    """``POST /v1/orders``, validated; ``currency`` normalised (``RMB`` -> ``CNY``)."""

    order_no: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO)]
    amount: Amount
    currency: Annotated[str, AfterValidator(_currency)]
    # A JSON string naming the enum's member (strict mode takes members only; a string is all
    # JSON has, and nothing else coerces to one).
    channel: Annotated[Channel, Field(strict=False)]
    description: Annotated[str, Field(min_length=1, max_length=127), AfterValidator(_plain_text)]
    splits: Annotated[list[Split], Field(min_length=1, max_length=MAX_RECEIVERS)]
    platform_fee: Fee
    notify_url: NotifyUrl | None = None

    def merchant_ids(self) -> list[str]:
        return [s.merchant_id for s in self.splits]


class RefundRequest(StrictBody):
    """``POST /v1/orders/{orderNo}/refunds``. Without ``splits`` the refund is shared out in
    proportion (``splits.allocate``); with them, they and ``platformFee`` (0 when left out)
    name each part's amount."""

    refund_no: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO)]
    amount: Amount
    reason: Annotated[str, Field(max_length=80), AfterValidator(_free_text)] | None = None
    splits: Annotated[list[RefundSplit], Field(min_length=1, max_length=MAX_RECEIVERS)] | None = (
        None
    )
    platform_fee: Fee | None = None


def parse_order_request(raw: bytes, callbacks: CallbackAddresses | None = None) -> OrderRequest:
    """Parse a raw ``POST /v1/orders`` body: InvalidOrder naming the first bad field, or
    ``splits.SplitMismatch`` when the amounts do not add up. ``callbacks``: where a notifyUrl
    may point (public addresses only unless the operator allows a range)."""
    document = _document(raw)
    try:
        order = OrderRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        _raise_first(exc)
    ids = order.merchant_ids()
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, m in enumerate(ids) if m in ids[:i])
        raise InvalidOrder(f"splits[{duplicate}].merchantId", "names a receiver twice")
    if order.notify_url is not None:
        host = urlsplit(order.notify_url).hostname or ""
        if (callbacks or PUBLIC_ONLY).host_refusal(host) is not None:
            raise InvalidOrder("notifyUrl", NOTIFY_NOT_ALLOWED)
    check_split(order.amount, [s.amount for s in order.splits], order.platform_fee)
    return order


def parse_refund_request(raw: bytes) -> RefundRequest:
    """Parse a raw refund body; InvalidOrder naming the first bad field. Whether its amounts
    fit the order is decided against the order (``refunds.plan``)."""
    document = _document(raw)
    try:
        refund = RefundRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        _raise_first(exc)
    if refund.splits is None and refund.platform_fee is not None:
        raise InvalidOrder("platformFee", "only with splits: without them the refund is shared")
    if refund.splits is not None:
        ids = [s.merchant_id for s in refund.splits]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i, m in enumerate(ids) if m in ids[:i])
            raise InvalidOrder(f"splits[{duplicate}].merchantId", "names a receiver twice")
    return refund


# --- parsing internals -----------------------------------------------------------------------


def _document(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, read strictly (``common.json_body``)."""
    try:
        return parse_object(raw)
    except InvalidBody as exc:
        raise InvalidOrder(exc.field, exc.message) from None


def _raise_first(exc: ValidationError) -> NoReturn:
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [shown(str(part)) for part in error["loc"]]
    kind = error["type"]
    # splits.3.amount -> splits[3].amount in the message; splits.amount for the text's lookup
    # (common.json_body.first_error names list items by their index alone).
    field, generic = _field(loc)
    if kind == "missing":
        raise InvalidOrder(field, "required") from None
    if kind == "extra_forbidden":
        raise InvalidOrder(field, "not allowed") from None
    raise InvalidOrder(field, _MESSAGES.get(generic, "invalid")) from None


def _field(loc: list[str]) -> tuple[str, str]:
    named: list[str] = []
    generic: list[str] = []
    for part in loc:
        if part.isdigit() and named:
            named[-1] += f"[{part}]"
        else:
            named.append(part)
            generic.append(part)
    return ".".join(named) or "body", ".".join(generic) or "body"


def new_order_id(day: date, sequence: int) -> str:
    """``ORD`` + yyyymmdd + the sequence in 10 digits: the channel's out_trade_no."""
    return _numbered(ORDER_ID_PREFIX, day, sequence)


def new_refund_id(day: date, sequence: int) -> str:
    """``RFD`` + yyyymmdd + the sequence in 10 digits: the channel's out_refund_no."""
    return _numbered(REFUND_ID_PREFIX, day, sequence)


def _numbered(prefix: str, day: date, sequence: int) -> str:
    if isinstance(sequence, bool) or not 0 <= sequence < 10**_SEQUENCE_DIGITS:
        raise ValueError(f"sequence {sequence} does not fit {_SEQUENCE_DIGITS} digits")
    return f"{prefix}{day:%Y%m%d}{sequence:0{_SEQUENCE_DIGITS}d}"
