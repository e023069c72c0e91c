"""The API's operations as ``Call`` values, shared by the sync and async clients."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

from fundhub.client.errors import FundhubClientError, NotFound, UnexpectedPayload
from fundhub.client.exchange import Call
from fundhub.client.models import Payee, Payout

MAX_PAGE = 200
NOT_FOUND_CODE = "E009_NOT_FOUND"


def _segment(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


class PayoutFields(TypedDict):
    """What a payout is made of, for ``create_payout`` of either client: ``amount`` in minor
    units (fen) of ``currency``; ``purpose``, ``callback_url`` and ``extension`` optional."""

    supplier_id: str
    payer_account_id: str
    amount: int
    currency: str
    payee: Payee
    purpose: NotRequired[str | None]
    callback_url: NotRequired[str | None]
    extension: NotRequired[Mapping[str, Any] | None]


def create_payout(
    *,
    request_id: str,
    supplier_id: str,
    payer_account_id: str,
    amount: int,
    currency: str,
    payee: Payee,
    purpose: str | None = None,
    callback_url: str | None = None,
    extension: Mapping[str, Any] | None = None,
) -> Call:
    """``POST /v1/payouts``; the body is serialised once so every retry sends the same bytes."""
    # bool is an int subclass, and a float amount would be money in binary fractions.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int of minor units (fen)")
    if not isinstance(payee, Payee):
        raise TypeError("payee must be a fundhub.client.Payee")
    body: dict[str, Any] = {
        "requestId": request_id,
        "supplierId": supplier_id,
        "payerAccountId": payer_account_id,
        "amount": amount,
        "currency": currency,
        "payee": payee.to_wire(),
    }
    if purpose is not None:
        body["purpose"] = purpose
    if callback_url is not None:
        body["callbackUrl"] = callback_url
    if extension is not None:
        body["extension"] = dict(extension)
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Call("POST", "/v1/payouts", body=raw, correlation_id=request_id)


def get_payout(pay_id: str) -> Call:
    return Call("GET", f"/v1/payouts/{_segment(pay_id, 'pay_id')}")


def find_payout(request_id: str) -> Call:
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("request_id must be a non-empty string")
    return Call("GET", "/v1/payouts", query=(("requestId", request_id),))


def balance(account_id: str) -> Call:
    return Call("GET", f"/v1/accounts/{_segment(account_id, 'account_id')}/balance")


def transactions(account_id: str, cursor: str | None, limit: int) -> Call:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an int in 1..{MAX_PAGE}")
    query: tuple[tuple[str, str], ...] = (("limit", str(limit)),)
    if cursor is not None:
        query += (("cursor", cursor),)
    return Call(
        "GET", f"/v1/accounts/{_segment(account_id, 'account_id')}/transactions", query=query
    )


def read_payout(
    data: Mapping[str, Any], request_id: str | None = None, currency: str | None = None
) -> Payout:
    """A payout answer; on create, fills in what the gateway may leave out and checks the echo."""
    payout = Payout.from_wire(data)
    if request_id is not None:
        if payout.request_id is None:
            payout = replace(payout, request_id=request_id)
        elif payout.request_id != request_id:
            raise UnexpectedPayload(
                f"requestId: answer is for {payout.request_id!r}, not {request_id!r}"
            )
    if currency is not None and payout.currency is None:
        # The gateway normalises the bank's "RMB" to ISO 4217 "CNY"; so does the echo.
        payout = replace(payout, currency="CNY" if currency == "RMB" else currency)
    return payout


@contextmanager
def carrying(request_id: str) -> Iterator[None]:
    """Whatever a client error says, it names the payout's ``request_id``: a caller left
    without an answer can still ask ``find_payout`` whether the gateway took the request."""
    try:
        yield
    except FundhubClientError as exc:
        exc.request_id = request_id
        raise


def is_unknown_payout(error: NotFound) -> bool:
    """Only the gateway's own, signed "no such payout" means it never took the request."""
    return error.verified and error.error_code == NOT_FOUND_CODE
