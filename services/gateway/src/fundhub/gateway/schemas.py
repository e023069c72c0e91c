"""What the gateway's routes answer, as ``/openapi.json`` documents it.

The handlers build their bodies as dicts (``responses.success``, ``payouts.wire.payout_body``,
``ledger.balances.movement``, ``webhooks.store.deliveries_of``) and return them as they are: these
models only describe those bodies, field for field, for the document (and for the contract test
that checks every answer against it, ``tests/e2e/test_openapi_contract.py``). A field the code
may leave out is not required; a field it may set to null is nullable; no other field appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from fundhub.common.config import BANK_CALLBACK_PATH
from fundhub.common.errors import ErrorCode
from fundhub.gateway.responses import HEADER_SIGNATURE

REFUSAL_CODES = sorted({e.code for e in ErrorCode if e.http_status >= 400})
PAY_ID = r"^PAY[0-9]{18}$"


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",  # the document lists every field an answer has
        frozen=True,
    )


# --- refusals ------------------------------------------------------------------------------------


class Failure(_Wire):
    """Every refusal of every ``/v1`` route (``responses.failure``), whatever its status."""

    status_code: Annotated[int, Field(ge=400, le=599, description="the HTTP status, repeated")]
    biz_code: Literal["FAILED"]
    error_code: Annotated[str, Field(json_schema_extra={"enum": REFUSAL_CODES})]
    msg: Annotated[str, Field(description="why, naming the field when a value is refused")]
    timestamp: datetime


_REFUSALS: dict[int, str] = {
    400: "Refused (E001): a parameter or the body is invalid; msg names it. "
    "(E031_SPLIT_MISMATCH): an order's or a refund's amounts do not add up",
    401: "Refused: a missing or bad signature (E002), X-Timestamp out of the window "
    "(E005_TIMESTAMP_SKEW) or a reused X-Nonce (E006_NONCE_REPLAYED)",
    403: "Refused: the key lacks the scope (E007_SCOPE_FORBIDDEN) or the account "
    "(E008_ACCOUNT_FORBIDDEN)",
    404: "Refused (E009_NOT_FOUND): no such account, payout, merchant or order",
    409: "Refused (E010_IDEMPOTENCY_CONFLICT): the requestId (orderNo, refundNo) was used "
    "before with another body; for a refund also E034_ORDER_NOT_PAID (the order is not paid) "
    "and E044_SETTLEMENT_IN_PROGRESS (its settlement is under way: again once it is final)",
    413: "Refused (E011_PAYLOAD_TOO_LARGE): the body is larger than the route takes",
    422: "Refused: a receiver is not an ACTIVE merchant of the key (E032_MERCHANT_NOT_ACTIVE), "
    "or a refund is more than is left to refund (E033_REFUND_EXCEEDS_PAID)",
    503: "Not done (E013_UNAVAILABLE): a dependency is out of reach (for an order: the "
    "depository or the channel too); send the request again",
}

_SIGNATURE_HEADER = {
    "description": "Hex HMAC-SHA256 of the body, keyed with the caller's secret; on every "
    "answer to an authenticated caller",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}


def answers(
    successes: Mapping[int, tuple[type[BaseModel], str]], *refusals: int | tuple[int, str]
) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: its successes (always signed) and the refusals it can make
    (a status, described as ``_REFUSALS`` says, or a status and the route's own description)."""
    documented: dict[int | str, dict[str, Any]] = {
        status: {
            "model": model,
            "description": description,
            "headers": {HEADER_SIGNATURE: {**_SIGNATURE_HEADER, "required": True}},
        }
        for status, (model, description) in successes.items()
    }
    for refusal in refusals:
        status, description = refusal if isinstance(refusal, tuple) else (refusal, None)
        documented[status] = {
            "model": Failure,
            "description": description or _REFUSALS[status],
            "headers": {HEADER_SIGNATURE: _SIGNATURE_HEADER},
        }
    return documented


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` for its JSON body, described by the model that parses it
    (the body is read by hand, as raw bytes are what the caller signed): ``$defs`` inlined."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


# --- accounts ------------------------------------------------------------------------------------


class Movement(_Wire):
    """A posting on the account (``ledger.balances.movement``)."""

    movement_id: int
    entry_id: Annotated[str, Field(description="the journal entry (a UUID)")]
    kind: str
    bucket: Literal["available", "frozen", "pending"]
    amount: Annotated[int, Field(description="minor units; negative for a debit")]
    currency: str
    ref_type: str
    ref_id: str
    description: str
    at: datetime


class Balance(_Wire):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    account_id: str
    currency: str
    available: int
    frozen: int
    pending: int
    total: Annotated[int, Field(description="available + frozen + pending")]
    as_of: datetime
    movements: Annotated[list[Movement], Field(description="the latest, newest first")]


class Transactions(_Wire):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    account_id: str
    items: Annotated[list[Movement], Field(description="newest first")]
    next_cursor: Annotated[str | None, Field(description="the next page's cursor; null at the end")]


# --- payouts -------------------------------------------------------------------------------------


class Payout(_Wire):
    """A payout (``payouts.wire.payout_body``): HTTP 202 while PROCESSING, 200 once final."""

    status_code: Literal[200, 202]
    biz_code: Literal["PROCESSING", "SUCCESS", "FAILED"]
    state: Annotated[
        Literal["PROCESSING", "SUCCESS", "FAILED", "RETURNED"],
        Field(description="RETURNED reads bizCode FAILED"),
    ]
    pay_id: Annotated[str, Field(pattern=PAY_ID)]
    request_id: str
    timestamp: Annotated[datetime, Field(description="when it reached its current state")]
    supplier_id: str
    payer_account_id: str
    amount: Annotated[int, Field(gt=0)]
    currency: str
    extension: Annotated[
        dict[str, Any], Field(description="the request's extension, plus bankTransactionId")
    ]
    # Present only on a payout that failed (or was returned): left out otherwise, never null.
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None


class CallbackAttempt(_Wire):
    at: datetime
    status_code: Annotated[int | None, Field(description="null when no HTTP answer came")]
    error: str | None
    duration_ms: int


class CallbackDelivery(_Wire):
    state: Annotated[str, Field(description="the payout state this callback reports")]
    url: str
    status: Literal["PENDING", "DELIVERED", "GAVE_UP"]
    attempt_count: int
    next_attempt_at: Annotated[datetime | None, Field(description="only while PENDING")]
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[CallbackAttempt]


class CallbackDeliveries(_Wire):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    pay_id: str
    deliveries: Annotated[list[CallbackDelivery], Field(description="oldest first")]


class CallbacksReplayed(_Wire):
    status_code: Literal[202]
    biz_code: Literal["PROCESSING"]
    timestamp: datetime
    pay_id: str
    replayed: Annotated[int, Field(description="deliveries set to be sent again")]


class PayoutScenarioPlaced(_Wire):
    """A sandbox scenario in place (``payouts.sandbox``): the payout the key creates next with
    ``requestId`` gets this treatment from the simulated bank."""

    status_code: Literal[201]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    request_id: str
    outcome: Literal["SUCCESS", "FAILED", "RETURNED"]
    reason: str | None
    result_delay_ms: Annotated[int, Field(ge=0, le=60_000)]
    result_copies: Annotated[int, Field(ge=1, le=2)]


# --- settlement and withdrawals ---------------------------------------------------------------


class SettlementPart(_Wire):
    merchant_id: Annotated[str | None, Field(description="null for the platform fee")]
    amount: Annotated[int, Field(gt=0, description="moved from pending to available")]


class Settlement(_Wire):
    """An order's settlement (``settlement.wire.settlement_body``): 202 while the depository
    works on it, 200 once SETTLED or REFUSED."""

    status_code: Literal[200, 202]
    biz_code: Literal["PROCESSING", "SUCCESS", "FAILED"]
    state: Literal["PENDING", "PROCESSING", "SETTLED", "REFUSED"]
    settlement_id: Annotated[str, Field(pattern=r"^STL[0-9]{18}$")]
    order_no: str
    trigger: Annotated[
        Literal["SCHEDULED", "CONFIRMED"],
        Field(description="its T+1 cut-off came, or the platform confirmed it"),
    ]
    timestamp: Annotated[datetime, Field(description="when it reached its current state")]
    amount: Annotated[int, Field(gt=0, description="the parts' sum, net of refunds")]
    currency: str
    parts: list[SettlementPart]
    bank_split_id: str | SkipJsonSchema[None] = None
    # Present only on a REFUSED settlement (E043_SPLIT_REFUSED and the bank's reason).
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None


class WithdrawalPayee(_Wire):
    account_name: Annotated[str, Field(description="masked: the first character")]
    account_no: Annotated[str, Field(description="masked: the last four characters")]
    bank_name: str


class Withdrawal(_Wire):
    """A withdrawal (``settlement.wire.withdrawal_body``): its payout, in the merchant's terms."""

    status_code: Literal[200, 202]
    biz_code: Literal["PROCESSING", "SUCCESS", "FAILED"]
    state: Literal["PROCESSING", "SUCCESS", "FAILED", "RETURNED"]
    merchant_id: str
    request_id: str
    pay_id: Annotated[str, Field(pattern=PAY_ID)]
    timestamp: Annotated[datetime, Field(description="when it reached its current state")]
    amount: Annotated[int, Field(gt=0)]
    currency: str
    payee: WithdrawalPayee
    bank_transaction_id: str | SkipJsonSchema[None] = None
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None


# --- merchants ------------------------------------------------------------------------------------


class MaskedPerson(_Wire):
    name: Annotated[str, Field(description="masked: the first character")]
    id_type: Literal["RESIDENT_ID", "PASSPORT", "TRAVEL_PERMIT"]
    id_number: Annotated[str, Field(description="masked: the last four characters")]


class MaskedLicence(_Wire):
    licence_no: Annotated[str, Field(description="masked: the last four characters")]
    valid_until: str | SkipJsonSchema[None] = None


class MaskedContact(_Wire):
    name: Annotated[str, Field(description="masked: the first character")]
    phone: Annotated[str, Field(description="masked: the last four digits")]
    email: Annotated[
        str | SkipJsonSchema[None], Field(description="masked: first character and domain")
    ] = None


class MerchantMaterials(_Wire):
    """One version of the material (``merchants.wire.masked_materials``), personal data masked."""

    name: str
    type: Literal["INDIVIDUAL", "ENTERPRISE"]
    legal_person: MaskedPerson
    licence: MaskedLicence | SkipJsonSchema[None] = None  # an enterprise's only
    contact: MaskedContact


class MaterialVersion(_Wire):
    version: Annotated[int, Field(ge=1)]
    state: Literal["PENDING_REVIEW", "APPROVED", "REJECTED"]
    reason: Annotated[str | None, Field(description="the depository's, when REJECTED")]
    submitted_at: datetime
    reviewed_at: datetime | None
    materials: MerchantMaterials


class MerchantSettlementAccount(_Wire):
    binding_id: str
    account_no: Annotated[str, Field(description="masked: the last four characters")]
    account_name: Annotated[str, Field(description="masked: the first character")]
    bank_name: str
    state: Literal[
        "VERIFYING",
        "AWAITING_CONFIRMATION",
        "CONFIRMING",
        "VERIFIED",
        "REPLACED",
        "FAILED",
        "SUPERSEDED",
    ]
    in_use: Annotated[bool, Field(description="the account withdrawals go to")]
    attempts_left: Annotated[int, Field(ge=0, le=5, description="wrong amounts still allowed")]
    reason: str | None
    created_at: datetime
    verified_at: datetime | None


class Merchant(_Wire):
    """A sub-merchant (``merchants.wire.merchant_body``): 202 PROCESSING while the depository
    (or the merchant, for a micro-deposit) is to act, else 200; REJECTED reads bizCode FAILED
    with errorCode E053_MERCHANT_REJECTED and the depository's reason in msg."""

    status_code: Literal[200, 202]
    biz_code: Literal["PROCESSING", "SUCCESS", "FAILED"]
    state: Literal["PENDING_REVIEW", "ACTIVE", "REJECTED", "CLOSING", "CLOSED"]
    timestamp: Annotated[datetime, Field(description="when the merchant last changed")]
    merchant_id: str
    merchant_no: str
    account_id: Annotated[str, Field(description="its ledger account: GET /v1/accounts/{id}")]
    currency: str
    notify_url: str | None
    member_no: Annotated[str | None, Field(description="the depository's number for it")]
    version_in_force: Annotated[int | None, Field(description="the approved version it trades on")]
    materials: Annotated[
        MerchantMaterials | None, Field(description="the version in force, else the latest")
    ]
    version_count: int
    versions: Annotated[list[MaterialVersion], Field(description="newest first (the last 50)")]
    settlement_account: Annotated[
        MerchantSettlementAccount | None, Field(description="the verified account in use")
    ]
    settlement_accounts: Annotated[
        list[MerchantSettlementAccount], Field(description="newest first (the last 10)")
    ]
    reason: Annotated[str | None, Field(description="the depository's last reason")]
    created_at: datetime
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None


# --- orders --------------------------------------------------------------------------------------


class OrderSplit(_Wire):
    merchant_id: str
    amount: Annotated[int, Field(gt=0)]
    account_id: Annotated[str, Field(description="the merchant's ledger account")]


class OrderPayment(_Wire):
    app_id: Annotated[str, Field(description="the channel app that takes the payment")]
    params: Annotated[
        dict[str, str],
        Field(
            description="what the checkout needs (WeChat Pay's code_url or prepay_id, "
            "Alipay's qr_code); empty until the channel created the payment"
        ),
    ]
    transaction_id: Annotated[str | None, Field(description="the channel's, once paid")]
    paid_at: datetime | None


class RefundShare(_Wire):
    merchant_id: str
    amount: Annotated[int, Field(ge=0)]


_REFUND_STATE = Literal["PROCESSING", "SUCCESS", "CLOSED", "FAILED"]


class RefundDebit(_Wire):
    """The depository's debit of the members' shares for a refund made after the order's
    split (``orders.wire.debit_item``)."""

    state: Literal["PENDING", "PROCESSING", "SUCCESS", "FAILED"]
    finished_at: Annotated[datetime | None, Field(description="the bank's time of the debit")]
    error_code: str | SkipJsonSchema[None] = None


class OrderRefund(_Wire):
    """A refund as its order lists it (``orders.wire.refund_item``)."""

    refund_no: str
    refund_id: Annotated[str, Field(description="ours, the channel's out_refund_no")]
    state: _REFUND_STATE
    amount: Annotated[int, Field(gt=0)]
    splits: Annotated[list[RefundShare], Field(description="each receiver's part")]
    platform_fee: Annotated[int, Field(ge=0, description="the platform fee's part")]
    taken_from: Annotated[
        Literal["pending", "available"] | None,
        Field(description="the bucket its money was taken from; null until taken"),
    ]
    channel_refund_id: str | None
    created_at: datetime
    finished_at: datetime | None
    reason: str | SkipJsonSchema[None] = None
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None
    depository_debit: Annotated[
        RefundDebit | SkipJsonSchema[None],
        Field(description="only for a refund taken from settled shares (the bank debits them)"),
    ] = None


class OrderSettlement(_Wire):
    state: Annotated[
        Literal["UNSETTLED", "SETTLING", "SETTLED"],
        Field(description="SETTLING while the depository moves the shares (refunds wait)"),
    ]
    settled_at: datetime | None


class Order(_Wire):
    """An order (``orders.wire.order_body``)."""

    status_code: Literal[200]
    biz_code: Annotated[
        Literal["PROCESSING", "SUCCESS", "FAILED"],
        Field(description="PROCESSING until paid; FAILED when refused or closed unpaid"),
    ]
    timestamp: Annotated[datetime, Field(description="when it reached its current state")]
    order_no: str
    order_id: Annotated[str, Field(description="ours, the channel's out_trade_no")]
    state: Literal["CREATED", "AWAITING_PAYMENT", "PAID", "CLOSED", "FAILED"]
    amount: Annotated[int, Field(gt=0)]
    currency: str
    channel: Literal["WECHATPAY", "ALIPAY"]
    description: str
    splits: list[OrderSplit]
    platform_fee: Annotated[int, Field(ge=0)]
    payment: OrderPayment
    refunded_amount: Annotated[int, Field(ge=0, description="what SUCCESS refunds returned")]
    refunds: Annotated[list[OrderRefund], Field(description="oldest first")]
    settlement: OrderSettlement
    created_at: datetime
    notify_url: str | SkipJsonSchema[None] = None
    error_code: str | SkipJsonSchema[None] = None
    msg: str | SkipJsonSchema[None] = None


class Refund(OrderRefund):
    """A refund (``orders.wire.refund_body``): HTTP 202 while PROCESSING, 200 once final."""

    status_code: Literal[200, 202]
    biz_code: Literal["PROCESSING", "SUCCESS", "FAILED"]
    timestamp: datetime
    order_no: str
    order_id: str


# --- reconciliation (fundhub.reconciliation.wire) ------------------------------------------------


class ReconPerClass(_Wire):
    """One number per class: items (``counts``) or fen (``sums``: the source's amount where it
    has a line, else the platform's)."""

    matched: int
    missing_on_platform: int
    missing_at_channel: int
    amount_mismatch: int
    status_mismatch: int
    duplicate: int
    fee_difference: int


class ReconRunOut(_Wire):
    run_id: str
    source: Literal["wechatpay", "alipay", "bank"]
    date: Annotated[str, Field(description="the business day (GMT+8), YYYY-MM-DD")]
    state: Literal["CURRENT", "SUPERSEDED"]
    superseded_by: str | None
    file_id: Annotated[int, Field(description="the newest of the files the run read")]
    file_ids: Annotated[
        list[int], Field(description="every current file of the day: one per merchant app")
    ]
    file_name: str
    file_sha256: str
    counts: ReconPerClass
    sums: ReconPerClass
    line_count: int
    record_count: int
    carried_in: Annotated[int, Field(description="items handed over by the previous day's run")]
    carried_out: Annotated[int, Field(description="near-midnight items handed to the next day")]
    unexplained_balances: int
    started_at: datetime
    finished_at: datetime
    run_by: str


class ReconBalanceOut(_Wire):
    account: str
    ledger_fen: int
    bank_fen: int
    difference: Annotated[int, Field(description="bank - ledger")]
    explained_fen: Annotated[int, Field(description="what the day's discrepancies move")]
    state: Literal["AGREED", "EXPLAINED", "UNEXPLAINED"]


class ReconRuns(_Wire):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    items: Annotated[list[ReconRunOut], Field(description="newest day first")]


class ReconRun(ReconRunOut):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    balances: Annotated[list[ReconBalanceOut], Field(description="the bank's runs only")]


class ReconDiscrepancyOut(_Wire):
    discrepancy_id: str
    run_id: str
    klass: Annotated[
        Literal[
            "missingOnPlatform",
            "missingAtChannel",
            "amountMismatch",
            "statusMismatch",
            "duplicate",
            "feeDifference",
        ],
        Field(alias="class"),
    ]
    state: Literal["OPEN", "ADJUSTMENT_PROPOSED", "RESOLVED", "CARRIED_OVER", "WRITTEN_OFF"]
    kind: str
    reference: str
    account: str | None
    statement_fen: int | None
    platform_fen: int | None
    difference_fen: int
    statement_fee: int | None
    platform_fee: int | None
    line_no: int | None
    statement: Annotated[dict[str, Any] | None, Field(description="the source's line, as read")]
    platform: Annotated[dict[str, Any] | None, Field(description="our record, as it stood")]
    proposal: dict[str, Any] | None
    proposed_by: str | None
    entry_id: Annotated[str | None, Field(description="the adjustment's journal entry")]
    created_at: datetime
    updated_at: datetime


class ReconDiscrepancies(_Wire):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    items: list[ReconDiscrepancyOut]
    next_cursor: Annotated[str | None, Field(description="the next page's cursor; null at the end")]


class ReconActionOut(_Wire):
    action_id: int
    action: Literal["PROPOSE", "APPROVE", "CARRY_OVER", "WRITE_OFF", "REOPEN"]
    from_state: str
    to_state: str
    actor: str
    reason: str
    detail: dict[str, Any] | None
    at: datetime


class ReconDiscrepancy(ReconDiscrepancyOut):
    status_code: Literal[200]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    actions: Annotated[list[ReconActionOut], Field(description="oldest first")]


class ReconIntake(_Wire):
    status_code: Literal[200, 201]
    biz_code: Literal["SUCCESS"]
    timestamp: datetime
    file_id: int
    created: Annotated[bool, Field(description="false: these very bytes were imported before")]
    superseded_file_id: int | None
    run: ReconRunOut | None


# --- operations (fundhub.web.health, shared with the workers, documented here) ------------------


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ready", "not-ready"]
    checks: Annotated[dict[str, bool], Field(description="each dependency, reachable or not")]


_REF = "#/components/schemas/{model}"


def _json_answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _operations(definitions: dict[str, Any]) -> dict[str, dict[int | str, Any]]:
    """The answers of the routes ``fundhub.web.health`` serves, which it does not declare."""
    for model in (Health, Readiness):
        definitions[model.__name__] = model.model_json_schema(
            ref_template=_REF, mode="serialization"
        )
    return {
        "/healthz": {"200": _json_answer(Health, "The process is alive")},
        "/readyz": {
            "200": _json_answer(Readiness, "Every dependency is reachable"),
            "503": _json_answer(Readiness, "Some dependency is out of reach (checks says which)"),
        },
        "/metrics": {
            "200": {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Make FastAPI's generated document say what the gateway really answers (in place, again
    and again alike): not FastAPI's own 422 (this API refuses invalid values with 400 E001; a
    422 a route declares, E004, stays), and the answers of the operations routes."""
    definitions: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.get("422", {}).get("description") == "Validation Error":
                responses.pop("422")  # FastAPI's own, never answered
    for name in ("HTTPValidationError", "ValidationError"):
        definitions.pop(name, None)
    _document_rate_limits(document)
    for path, responses in _operations(definitions).items():
        get = document.get("paths", {}).get(path, {}).get("get")
        if get is not None:
            get["responses"] = responses
    return document


_RETRY_AFTER = {
    "description": "Whole seconds to wait before the request can pass",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "required": True,
}


def _document_rate_limits(document: dict[str, Any]) -> None:
    """Every ``/v1`` operation and the bank's callback may answer 429 (``gateway.rate_limits``):
    a limit per key and route, per source address, or on failed authentication."""
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                responses["429"] = {
                    "description": "Refused (E012_RATE_LIMITED): over a rate limit; retry after "
                    "Retry-After seconds",
                    "headers": {"Retry-After": _RETRY_AFTER, HEADER_SIGNATURE: _SIGNATURE_HEADER},
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Failure"}}
                    },
                }
            elif path == BANK_CALLBACK_PATH:
                responses["429"] = {
                    "description": "Refused: over this address's rate limit; retry later",
                    "headers": {"Retry-After": _RETRY_AFTER},
                    "content": {
                        "text/plain": {
                            "schema": {"type": "string"},
                            "example": "fail: too many requests; retry after 1s",
                        }
                    },
                }
