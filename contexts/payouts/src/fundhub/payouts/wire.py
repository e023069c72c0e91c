"""A payout as the API, the callbacks and the events show it: one shape, built in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fundhub.common.clock import iso_utc
from fundhub.common.db import Row

_BIZ_CODE = {
    "PROCESSING": "PROCESSING",
    "SUCCESS": "SUCCESS",
    "FAILED": "FAILED",
    "RETURNED": "FAILED",
}
_HTTP = {"PROCESSING": 202, "SUCCESS": 200, "FAILED": 200, "RETURNED": 200}


def payout_body(row: Row) -> dict[str, Any]:
    """From a ``payouts`` row: the seed's fields, plus ``state`` (RETURNED is bizCode FAILED).

    ``timestamp`` is when the payout reached its current state (accepted, or finished).
    """
    state = str(row["state"])
    moment: datetime = row["finished_at"] or row["created_at"]
    extension = dict(row["extension"] or {})
    if row["bank_txn_id"]:
        extension["bankTransactionId"] = row["bank_txn_id"]
    body: dict[str, Any] = {
        "statusCode": _HTTP[state],
        "bizCode": _BIZ_CODE[state],
        "state": state,
        "payId": row["pay_id"],
        "requestId": row["request_id"],
        "timestamp": iso_utc(moment),
        "supplierId": row["supplier_id"],
        "payerAccountId": row["payer_account_id"],
        "amount": row["amount"],
        "currency": str(row["currency"]).strip(),
        "extension": extension,
    }
    if row["error_code"]:
        body["errorCode"] = row["error_code"]
        body["msg"] = row["message"] or ""
    return body


def http_status(state: str) -> int:
    return _HTTP[state]
