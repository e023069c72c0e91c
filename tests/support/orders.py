"""One payout transfer as the tests ask the bank for it: on the wire, and as a ``PayoutOrder``."""

from __future__ import annotations

from typing import Any

from fundhub.payouts.bank import PayoutOrder

REQUEST_ID = "PAY202504300000000001"
NOTIFY_URL = "http://127.0.0.1:9/callbacks/bank"


def transfer_wire(request_id: Any = REQUEST_ID, **changes: Any) -> dict[str, Any]:
    """The transfer as the bank's API takes it, every value a string; ``changes`` replace or
    add fields, and a change to ``...`` leaves that field out."""
    body: dict[str, Any] = {
        "bank_request_id": request_id,
        "payer_account": "6222020000000001",
        "amount": "1000",
        "currency": "CNY",
        "payee_account_no": "6217000010002345678",
        "payee_account_name": "上海某某供应商有限公司",
        "payee_bank_name": "中国建设银行",
        "notify_url": NOTIFY_URL,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def payout_order(request_id: str = REQUEST_ID, **changes: Any) -> PayoutOrder:
    """The same transfer as the payouts context's ``PayoutOrder`` (its amount an integer)."""
    fields: dict[str, Any] = {**transfer_wire(request_id), "amount": 1000}
    fields.update(changes)
    return PayoutOrder(**fields)
