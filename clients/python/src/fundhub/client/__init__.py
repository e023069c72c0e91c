"""fundhub's Python client: signed requests, verified answers and callbacks, safe retries.

from fundhub.client import FundhubClient, Payee

with FundhubClient("https://fundhub.example", key_id, secret) as api:
    payout = api.create_payout(supplier_id="SUP10001", payer_account_id="6222020000000001",
                               amount=1000, currency="CNY",
                               payee=Payee("Acme Ltd", "6217000010001234567", "ICBC"))
"""

from fundhub.client.async_client import AsyncFundhubClient
from fundhub.client.calls import PayoutFields
from fundhub.client.errors import (
    Conflict,
    Forbidden,
    FundhubClientError,
    FundhubError,
    InvalidRequest,
    NetworkError,
    NotFound,
    ServerError,
    SignatureMismatch,
    StaleCallback,
    Unauthorized,
    UnexpectedPayload,
)
from fundhub.client.ids import new_request_id
from fundhub.client.models import (
    FAILED,
    PROCESSING,
    SUCCESS,
    Balance,
    Movement,
    Page,
    Payee,
    Payout,
)
from fundhub.client.signing import canonical_query, request_signature
from fundhub.client.sync_client import FundhubClient
from fundhub.client.webhooks import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify_callback

__all__ = [
    "FAILED",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "PROCESSING",
    "SUCCESS",
    "AsyncFundhubClient",
    "Balance",
    "Conflict",
    "Forbidden",
    "FundhubClient",
    "FundhubClientError",
    "FundhubError",
    "InvalidRequest",
    "Movement",
    "NetworkError",
    "NotFound",
    "Page",
    "Payee",
    "Payout",
    "PayoutFields",
    "ServerError",
    "SignatureMismatch",
    "StaleCallback",
    "Unauthorized",
    "UnexpectedPayload",
    "canonical_query",
    "new_request_id",
    "request_signature",
    "verify_callback",
]
