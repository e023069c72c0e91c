"""The one table of error codes: HTTP status, code and default message for every refusal."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class ErrorCode(Enum):
    """Each member is (http_status, wire code, default message)."""

    INVALID_PARAMETER = (400, "E001", "invalid parameter")
    BAD_SIGNATURE = (401, "E002", "signature verification failed")
    TIMEOUT = (504, "E003_TIMEOUT", "the bank did not answer in time")
    INSUFFICIENT_FUNDS = (422, "E004_INSUFFICIENT_FUNDS", "available balance is insufficient")
    TIMESTAMP_SKEW = (401, "E005_TIMESTAMP_SKEW", "timestamp outside the allowed window")
    NONCE_REPLAYED = (401, "E006_NONCE_REPLAYED", "nonce already used")
    SCOPE_FORBIDDEN = (403, "E007_SCOPE_FORBIDDEN", "the key lacks the required scope")
    ACCOUNT_FORBIDDEN = (403, "E008_ACCOUNT_FORBIDDEN", "the key was not given this account")
    NOT_FOUND = (404, "E009_NOT_FOUND", "not found")
    IDEMPOTENCY_CONFLICT = (409, "E010_IDEMPOTENCY_CONFLICT", "requestId reused with another body")
    PAYLOAD_TOO_LARGE = (413, "E011_PAYLOAD_TOO_LARGE", "request body too large")
    RATE_LIMITED = (429, "E012_RATE_LIMITED", "too many requests; retry after Retry-After seconds")
    # Merchants (50-59): what a merchant's state refuses, and its depository review's outcome.
    MERCHANT_BALANCE_NOT_ZERO = (
        409,
        "E050_MERCHANT_BALANCE_NOT_ZERO",
        "the merchant's account still holds money",
    )
    MERCHANT_HAS_UNSETTLED_ORDERS = (
        409,
        "E051_MERCHANT_HAS_UNSETTLED_ORDERS",
        "the merchant has orders not settled yet",
    )
    MERCHANT_STATE_CONFLICT = (
        409,
        "E052_MERCHANT_STATE_CONFLICT",
        "the merchant's state does not allow this now",
    )
    MERCHANT_REJECTED = (200, "E053_MERCHANT_REJECTED", "the depository rejected the merchant")
    # Outcomes of a payout, reported in its state (HTTP 200 on a query) rather than as refusals.
    RETURNED = (200, "E014_RETURNED", "the bank returned a paid payout")
    BANK_REJECTED = (200, "E015_BANK_REJECTED", "the bank refused the transfer")
    PAYEE_INVALID = (200, "E016_PAYEE_INVALID", "the bank refused the payee account")
    # Orders and their refunds (fundhub.orders): refusals, then outcomes shown in their state.
    SPLIT_MISMATCH = (400, "E031_SPLIT_MISMATCH", "splits and platformFee do not add up to amount")
    MERCHANT_NOT_ACTIVE = (422, "E032_MERCHANT_NOT_ACTIVE", "a receiver is not an ACTIVE merchant")
    REFUND_EXCEEDS_PAID = (422, "E033_REFUND_EXCEEDS_PAID", "more than is left to refund")
    ORDER_NOT_PAID = (409, "E034_ORDER_NOT_PAID", "the order is not paid: nothing to refund")
    CHANNEL_REFUSED = (200, "E035_CHANNEL_REFUSED", "the payment channel refused")
    DEPOSITORY_REFUSED = (200, "E036_DEPOSITORY_REFUSED", "the depository refused the order")
    # Settlement and withdrawals (E040-E049): refusals the order's or merchant's state makes
    # (E044 is also a refund's while the order's settlement is under way).
    ORDER_SETTLED = (409, "E040_ORDER_SETTLED", "the order is settled already")
    ORDER_FULLY_REFUNDED = (409, "E041_ORDER_FULLY_REFUNDED", "the order is fully refunded")
    NO_VERIFIED_ACCOUNT = (
        409,
        "E042_NO_VERIFIED_ACCOUNT",
        "the merchant has no verified settlement account",
    )
    SETTLEMENT_IN_PROGRESS = (
        409,
        "E044_SETTLEMENT_IN_PROGRESS",
        "the order's settlement is in progress; retry once it is final",
    )
    REFUND_IN_PROGRESS = (
        409,
        "E045_REFUND_IN_PROGRESS",
        "a refund of the order is being taken; retry in a moment",
    )
    # A settlement the depository refused: its state's errorCode, not a refusal of a request.
    SPLIT_REFUSED = (200, "E043_SPLIT_REFUSED", "the depository refused the split")
    # A refund after the order's split, at the depository (E070-E074): its debit's outcome,
    # kept on the debit (``order_refund_debits.error_code``), not a refusal of a request.
    REFUND_DEBIT_REFUSED = (
        200,
        "E070_REFUND_DEBIT_REFUSED",
        "the depository refused to debit the members for the refund",
    )
    REFUND_DEBIT_FAILED = (
        200,
        "E071_REFUND_DEBIT_FAILED",
        "the depository could not debit the members for the refund",
    )
    # Reconciliation (E060-E069): statement files and the discrepancies' actions.
    STATEMENT_REJECTED = (422, "E060_STATEMENT_REJECTED", "the statement file was refused")
    DISCREPANCY_STATE_CONFLICT = (
        409,
        "E061_DISCREPANCY_STATE_CONFLICT",
        "the discrepancy's state does not allow this",
    )
    OWN_APPROVAL = (403, "E062_OWN_APPROVAL", "nobody approves their own adjustment")
    NO_STATEMENT = (409, "E063_NO_STATEMENT", "no statement file for that source and day")
    ADJUSTMENT_REFUSED = (422, "E064_ADJUSTMENT_REFUSED", "the adjustment cannot be posted")
    # Statement uploads (E075-E079).
    UNSUPPORTED_MEDIA_TYPE = (415, "E075_UNSUPPORTED_MEDIA_TYPE", "not a statement file's type")
    STATEMENT_TOO_LARGE_UNPACKED = (
        422,
        "E076_STATEMENT_TOO_LARGE_UNPACKED",
        "the statement file unpacks to more than a statement can be",
    )
    # Sandbox (E080-E084): the environments kept apart, the scenario controls.
    ENVIRONMENT_MISMATCH = (
        503,
        "E080_ENVIRONMENT_MISMATCH",
        "the database holds the other environment's state",
    )
    SCENARIO_TOO_LATE = (
        409,
        "E081_SCENARIO_TOO_LATE",
        "a payout with this requestId exists: place its scenario before creating it",
    )
    SCENARIO_LIMIT = (
        409,
        "E082_SCENARIO_LIMIT",
        "the key holds the most scenarios not used yet",
    )
    UNAVAILABLE = (503, "E013_UNAVAILABLE", "a dependency is unavailable; retry")
    INTERNAL = (500, "E500_INTERNAL", "internal error")

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def default_message(self) -> str:
        return self.value[2]


class FundhubError(Exception):
    """A refusal with a code from the table; its message is safe to show to the caller."""

    def __init__(
        self,
        error: ErrorCode,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or error.default_message)
        self.error = error
        self.message = message or error.default_message
        # Sent with the refusal (a 429's Retry-After).
        self.headers: Mapping[str, str] = headers or {}
