"""A merchant as the API, its callbacks and its events show it: one shape, built in one place.
Pure: it reads rows the store gathered (``store.MerchantView``).

Personal data is masked here for every reader (``audit.masking``, the rule the audit log
applies): identity, licence, phone and account numbers keep their last four characters, names
their first, e-mail addresses their first character and domain. The merchant's own name and
its bank's name are not personal data and stay whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.audit.masking import mask, mask_name, mask_number
from fundhub.common.clock import iso_utc
from fundhub.common.db import Row
from fundhub.common.errors import ErrorCode
from fundhub.merchants.states import MAX_CONFIRMATIONS, MerchantState

_PERSONAL = ("legalPerson", "licence", "contact")


@dataclass(frozen=True)
class MerchantView:
    """A ``merchants`` row, its versions and its settlement accounts, newest first (the store
    reads the newest few of each, and always the version in force and the account in use)."""

    merchant: Row
    versions: Sequence[Row]
    bindings: Sequence[Row]
    version_count: int


def masked_materials(materials: Mapping[str, Any]) -> dict[str, Any]:
    """The material with its personal data masked (name and type of the merchant kept)."""
    return {
        key: mask(value) if key in _PERSONAL else value
        for key, value in materials.items()
        if value is not None
    }


def _at(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment is not None else None


def _version(row: Row) -> dict[str, Any]:
    return {
        "version": row["version"],
        "state": row["state"],
        "reason": row["reason"],
        "submittedAt": iso_utc(row["created_at"]),
        "reviewedAt": _at(row["reviewed_at"]),
        "materials": masked_materials(row["materials"]),
    }


def _account(row: Row, in_use: str | None) -> dict[str, Any]:
    return {
        "bindingId": row["binding_id"],
        "accountNo": mask_number(row["account_no"]),
        "accountName": mask_name(row["account_name"]),
        "bankName": row["bank_name"],
        "state": row["state"],
        "inUse": row["binding_id"] == in_use,
        "attemptsLeft": max(0, MAX_CONFIRMATIONS - int(row["failed_attempts"])),
        "reason": row["reason"],
        "createdAt": iso_utc(row["created_at"]),
        "verifiedAt": _at(row["verified_at"]),
    }


def merchant_body(view: MerchantView) -> dict[str, Any]:
    """The merchant, whatever asked: ``materials`` is the version in force (the latest while
    none is approved), ``versions`` newest first (``versionCount`` of them in all),
    ``settlementAccount`` the verified account withdrawals use (null when none)."""
    m = view.merchant
    state = MerchantState(m["state"])
    in_force = m["approved_version"]
    versions = [_version(v) for v in view.versions]
    shown = next(
        (v for v in versions if v["version"] == in_force), versions[0] if versions else None
    )
    in_use = m["settlement_binding"]
    accounts = [_account(b, in_use) for b in view.bindings]
    body: dict[str, Any] = {
        "statusCode": state.http_status,
        "bizCode": state.biz_code,
        "state": state.value,
        "timestamp": iso_utc(m["updated_at"]),
        "merchantId": m["merchant_id"],
        "merchantNo": m["merchant_no"],
        "accountId": m["account_id"],
        "currency": str(m["currency"]).strip(),
        "notifyUrl": m["notify_url"],
        "memberNo": m["member_no"],
        "versionInForce": in_force,
        "materials": shown["materials"] if shown else None,
        "versionCount": view.version_count,
        "versions": versions,
        "settlementAccount": next((a for a in accounts if a["inUse"]), None),
        "settlementAccounts": accounts,
        "reason": m["reason"],
        "createdAt": iso_utc(m["created_at"]),
    }
    if state is MerchantState.REJECTED:
        body["errorCode"] = ErrorCode.MERCHANT_REJECTED.code
        body["msg"] = m["reason"] or ErrorCode.MERCHANT_REJECTED.default_message
    return body


def callback_body(view: MerchantView, event_type: str, event_key: str) -> dict[str, Any]:
    """What ``notifyUrl`` receives: the merchant as it now stands, and which change this is
    (``eventId`` is unique per merchant: a client dedupes on merchantId + eventId)."""
    return {"event": event_type, "eventId": event_key, **merchant_body(view)}
