"""Withdrawals (提现): a merchant's ``available`` paid out to its verified settlement account.

A withdrawal is a payout, not a second payout engine: its payer is the merchant's ledger
account, its payee the account the bank verified by micro-deposit, and from acceptance on the
payout machinery does the rest (the hold on ``available``, the bank's results, returns, polling,
the callback of the final state to the merchant's ``notifyUrl``). What this module adds is what
a payout does not know: whose merchant it is (another tenant's reads as missing), that the
merchant is ACTIVE and has a verified account, that the amount is within ``available`` now,
and the idempotency of the platform's ``requestId`` per merchant.

The payout's own requestId is derived from the merchant and the platform's requestId, so the
same withdrawal asked twice (or concurrently) is the same payout; the payout's extension names
the merchant and the platform's requestId, which the withdrawal's answers show.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationError

from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.json_body import StrictBody
from fundhub.payouts.admission import Admission, PayoutStore
from fundhub.payouts.request import MAX_AMOUNT, Payee, PayoutRequest
from fundhub.payouts.store import WIRE_COLUMNS
from fundhub.settlement import seams
from fundhub.settlement.wire import EXT_MERCHANT, EXT_REQUEST

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
PAYOUT_REQUEST_PREFIX = "wd-"
PURPOSE = "withdrawal"
ACTIVE = "ACTIVE"
MAX_BODY_KEYS = 8


class InvalidWithdrawal(ValueError):
    """``str(exc)`` is the wire ``msg``: ``"<field>: <message>"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


class WithdrawalRequest(StrictBody):
    """``POST /v1/merchants/{merchantId}/withdrawals``: strict (an amount is a JSON integer)."""

    request_id: Annotated[
        str, Field(min_length=1, max_length=64, pattern=REQUEST_ID_PATTERN.pattern)
    ]
    amount: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]


_MESSAGES = {
    "requestId": "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
    "amount": "must be a positive integer of at most 16 digits (fen)",
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_BODY_KEYS:
        raise InvalidWithdrawal("body", f"more than {MAX_BODY_KEYS} keys")
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidWithdrawal("body", "duplicate key")
        result[key] = value
    return result


def parse_withdrawal(raw: bytes) -> WithdrawalRequest:
    """The body, or InvalidWithdrawal naming the first bad field."""
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidWithdrawal):
            raise
        raise InvalidWithdrawal("body", "not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidWithdrawal("body", "not a JSON object")
    try:
        return WithdrawalRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in error["loc"])[:64] or "body"
        if error["type"] == "missing":
            raise InvalidWithdrawal(field, "required") from None
        if error["type"] == "extra_forbidden":
            raise InvalidWithdrawal(field, "not allowed") from None
        raise InvalidWithdrawal(field, _MESSAGES.get(field, "invalid")) from None


def payout_request_id(merchant_id: str, request_id: str) -> str:
    """The payout's requestId: one per (merchant, the platform's requestId), within the 64
    characters a payout's requestId may have."""
    digest = hashlib.sha256(f"{merchant_id}\n{request_id}".encode()).hexdigest()
    return PAYOUT_REQUEST_PREFIX + digest[:40]


def not_found(merchant_id: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"merchant {merchant_id} not found")


@dataclass(frozen=True)
class Withdrawal:
    """The payout a withdrawal is, as ``wire.withdrawal_body`` reads it (its payee too)."""

    row: dict[str, Any]
    created: bool


_FIND = f"SELECT {WIRE_COLUMNS}, payee FROM payouts WHERE key_id = $1 AND request_id = $2"


async def find(pool: Pool, key_id: str, merchant_id: str, request_id: str) -> dict[str, Any] | None:
    """The withdrawal the tenant asked for with ``request_id``; None for any other's."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        return None
    row = await pool.fetchrow(_FIND, key_id, payout_request_id(merchant_id, request_id))
    return None if row is None else dict(row)


async def request(
    pool: Pool,
    payouts: PayoutStore,
    key_id: str,
    nonce: str,
    merchant_id: str,
    wanted: WithdrawalRequest,
    correlation_id: str,
) -> Withdrawal:
    """Accept a withdrawal as a payout (the nonce recorded in its statement), or answer the
    one this requestId made. Raises the refusals' FundhubErrors, and NonceUsed."""
    known = await find(pool, key_id, merchant_id, wanted.request_id)
    if known is not None:
        if known["amount"] != wanted.amount:
            raise FundhubError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"requestId: {wanted.request_id} was used before with another amount",
            )
        return Withdrawal(known, created=False)
    async with pool.acquire() as conn:
        merchant = await seams.withdrawing_merchant(conn, key_id, merchant_id)
    if merchant is None:
        raise not_found(merchant_id)
    if merchant.state != ACTIVE:
        raise FundhubError(
            ErrorCode.MERCHANT_NOT_ACTIVE,
            f"merchant {merchant_id} is {merchant.state}: only an ACTIVE merchant withdraws",
        )
    if merchant.payee_account_no is None:
        raise FundhubError(
            ErrorCode.NO_VERIFIED_ACCOUNT,
            f"merchant {merchant_id} has no verified settlement account",
        )
    if wanted.amount > merchant.available:
        raise FundhubError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"amount {wanted.amount} is more than the available {merchant.available}",
        )
    payee = Payee(
        account_name=merchant.payee_account_name or "",
        account_no=merchant.payee_account_no,
        bank_name=merchant.payee_bank_name or "",
    )
    payout = PayoutRequest(
        request_id=payout_request_id(merchant_id, wanted.request_id),
        supplier_id=merchant.merchant_no,
        payer_account_id=merchant.account_id,
        amount=wanted.amount,
        currency=merchant.currency,
        payee=payee,
        purpose=PURPOSE,
        callback_url=merchant.notify_url,
        extension={EXT_MERCHANT: merchant_id, EXT_REQUEST: wanted.request_id},
    )
    admission: Admission = await payouts.admit(key_id, nonce, payout, correlation_id)
    row = dict(admission.row)
    row["payee"] = payee.model_dump(mode="json", by_alias=True)
    return Withdrawal(row, created=admission.created)
