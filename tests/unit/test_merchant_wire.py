"""A merchant as every reader sees it: identity data masked in answers and callbacks, and in the
audit log's copy of the request that registered it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from support.merchants import LICENCES, RESIDENT_IDS, registration

from fundhub.audit.entry import body_params
from fundhub.merchants.materials import parse_registration
from fundhub.merchants.wire import MerchantView, callback_body, masked_materials, merchant_body

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRETS = (RESIDENT_IDS[0], LICENCES[0], "13800138000", "ops@acme.example", "张三", "李四")


def merchant_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "merchant_id": "mch_01",
        "merchant_no": "M-1",
        "state": "ACTIVE",
        "account_id": "mac_01",
        "currency": "CNY",
        "notify_url": None,
        "member_no": "M100",
        "approved_version": 1,
        "latest_version": 2,
        "settlement_binding": "msa_1",
        "reason": None,
        "created_at": AT,
        "updated_at": AT,
    }
    row.update(changes)
    return row


def version_row(version: int, state: str, materials: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": version,
        "state": state,
        "materials": materials,
        "reason": None,
        "created_at": AT,
        "reviewed_at": AT if state != "PENDING_REVIEW" else None,
    }


def binding_row(binding_id: str, state: str, failed: int = 0) -> dict[str, Any]:
    return {
        "binding_id": binding_id,
        "account_no": "6222020200112233445",
        "account_name": "Acme Trading",
        "bank_name": "Ping An Bank",
        "state": state,
        "failed_attempts": failed,
        "reason": None,
        "created_at": AT,
        "verified_at": AT if state == "VERIFIED" else None,
    }


def view(**changes: Any) -> MerchantView:
    materials = parse_registration(json.dumps(registration("M-1")).encode()).materials()
    one = materials.normalised()
    two = {**one, "name": "Acme Trading Ltd"}
    return MerchantView(
        merchant_row(**changes),
        [version_row(2, "PENDING_REVIEW", two), version_row(1, "APPROVED", one)],
        [binding_row("msa_2", "AWAITING_CONFIRMATION", 2), binding_row("msa_1", "VERIFIED")],
        2,
    )


def test_identity_data_never_shows_whole() -> None:
    body = merchant_body(view())
    text = json.dumps(body, ensure_ascii=False)
    for secret in (*SECRETS, "6222020200112233445"):
        assert secret not in text, secret
    person = body["materials"]["legalPerson"]
    assert person == {"name": "张**", "idType": "RESIDENT_ID", "idNumber": "****4573"}
    assert body["materials"]["licence"]["licenceNo"] == "****0Y43"
    assert body["materials"]["contact"] == {
        "name": "李**",
        "phone": "****8000",
        "email": "o***@acme.example",
    }
    assert body["settlementAccount"]["accountNo"] == "****3445"
    assert body["settlementAccount"]["accountName"] == "A**"


def test_the_merchant_trades_on_the_version_in_force_and_every_version_shows() -> None:
    body = merchant_body(view())
    assert body["versionInForce"] == 1
    assert body["materials"]["name"] == "Acme Trading"  # version 1, not the pending 2
    assert [(v["version"], v["state"]) for v in body["versions"]] == [
        (2, "PENDING_REVIEW"),
        (1, "APPROVED"),
    ]
    assert body["settlementAccount"]["bindingId"] == "msa_1"
    assert [
        (a["bindingId"], a["inUse"], a["attemptsLeft"]) for a in body["settlementAccounts"]
    ] == [
        ("msa_2", False, 3),
        ("msa_1", True, 5),
    ]
    assert (body["statusCode"], body["bizCode"], body["state"]) == (200, "SUCCESS", "ACTIVE")


def test_a_rejected_merchant_reads_failed_with_the_banks_reason() -> None:
    body = merchant_body(view(state="REJECTED", reason="name refused", approved_version=None))
    assert (body["bizCode"], body["errorCode"], body["msg"]) == (
        "FAILED",
        "E053_MERCHANT_REJECTED",
        "name refused",
    )
    assert body["materials"]["name"] == "Acme Trading Ltd"  # none in force: the latest


def test_a_callback_is_the_merchant_and_the_event() -> None:
    body = callback_body(view(), "MATERIALS_APPROVED", "MATERIALS_APPROVED:2")
    assert body["event"] == "MATERIALS_APPROVED" and body["eventId"] == "MATERIALS_APPROVED:2"
    assert body["merchantId"] == "mch_01"


def test_the_audit_log_masks_a_registration_too() -> None:
    raw = json.dumps(registration("M-1"), ensure_ascii=False).encode()
    kept = json.dumps(body_params(raw, "application/json"), ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in kept, secret
    assert "****4573" in kept and "****0Y43" in kept and "o***@acme.example" in kept


def test_masked_materials_drop_nothing_but_absent_fields() -> None:
    assert masked_materials({"name": "X", "type": "INDIVIDUAL", "licence": None}) == {
        "name": "X",
        "type": "INDIVIDUAL",
    }
