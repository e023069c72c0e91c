"""A settlement and a withdrawal as the API and the callbacks show them: built in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fundhub.common.clock import iso_utc
from fundhub.common.db import Row
from fundhub.payouts.wire import payout_body
from fundhub.settlement.states import SettlementState

# A withdrawal's payout carries these in its extension: whose it is and the platform's id.
EXT_MERCHANT = "merchantId"
EXT_REQUEST = "withdrawalRequestId"


def settlement_body(row: Row) -> dict[str, Any]:
    """From a ``settlements`` row: 202 while the bank works on it, 200 once final.

    ``timestamp`` is when it reached its current state (recorded, or finished).
    """
    state = SettlementState(str(row["state"]))
    moment: datetime = row["finished_at"] or row["created_at"]
    body: dict[str, Any] = {
        "statusCode": 200 if state.is_final else 202,
        "bizCode": state.biz_code,
        "state": state.value,
        "settlementId": row["settlement_id"],
        "orderNo": row["order_no"],
        "trigger": row["trigger"],
        "timestamp": iso_utc(moment),
        "amount": row["amount"],
        "currency": str(row["currency"]).strip(),
        "parts": [{"merchantId": p["merchantId"], "amount": p["amount"]} for p in row["parts"]],
    }
    if row["bank_split_id"]:
        body["bankSplitId"] = row["bank_split_id"]
    if row["error_code"]:
        body["errorCode"] = row["error_code"]
        body["msg"] = row["message"] or ""
    return body


def masked_account_no(account_no: str) -> str:
    """Only the last four characters, as every answer and log shows an account number."""
    return "****" + account_no[-4:]


def masked_name(name: str) -> str:
    """Only the first character, as every answer shows a person's or an account's name."""
    return name[:1] + "**"


def withdrawal_body(row: Row) -> dict[str, Any]:
    """A withdrawal is its payout (``payouts.wire``), named for the merchant: its requestId is
    the platform's, its payee the verified settlement account (masked)."""
    payout = payout_body(row)
    extension = dict(payout.pop("extension"))
    body: dict[str, Any] = {
        "statusCode": payout["statusCode"],
        "bizCode": payout["bizCode"],
        "state": payout["state"],
        "merchantId": extension.get(EXT_MERCHANT),
        "requestId": extension.get(EXT_REQUEST),
        "payId": payout["payId"],
        "timestamp": payout["timestamp"],
        "amount": payout["amount"],
        "currency": payout["currency"],
        "payee": {
            "accountName": masked_name(str(row["payee"]["accountName"])),
            "accountNo": masked_account_no(str(row["payee"]["accountNo"])),
            "bankName": row["payee"]["bankName"],
        },
    }
    if "bankTransactionId" in extension:
        body["bankTransactionId"] = extension["bankTransactionId"]
    if "errorCode" in payout:
        body["errorCode"] = payout["errorCode"]
        body["msg"] = payout["msg"]
    return body
