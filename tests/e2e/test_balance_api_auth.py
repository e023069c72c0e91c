"""The balance API refuses every unauthenticated or unauthorised request with its own code."""

from __future__ import annotations

import time

from support.api import signed_get, signed_headers
from support.ledger import balances

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.common.signing import body_signature

ACCOUNT = "6222000444001"
OTHER = "6222000444002"
PATH = f"/v1/accounts/{ACCOUNT}/balance"


async def _fund(stack: Stack) -> None:
    for record, account in (("auth-1", ACCOUNT), ("auth-2", OTHER)):
        notice = build_notification(
            TransferSpec(record_id=record, in_acct_no=account, trans_amount=300),
            stack.env.app_id,
            stack.env.bank.private_pem,
        )
        assert (await stack.post(notice)).text == "success"

    async def funded() -> bool:
        found = await balances(stack.env.pool)
        return ACCOUNT in found and OTHER in found

    await wait_until(funded)


async def test_balance_api_refusals(stack: Stack) -> None:
    await _fund(stack)
    key_id, secret = stack.env.create_api_key("balance:read", ACCOUNT)
    admin_id, admin_secret = stack.env.create_api_key("admin", "*")

    ok = await signed_get(stack.http, key_id, secret, PATH)
    assert ok.status_code == 200 and ok.json()["available"] == 300
    # Every answer to an authenticated caller is signed with its secret.
    assert ok.headers["X-Signature"] == body_signature(secret, ok.content)

    async def refused(
        response_status: int, code: str, headers: dict[str, str], path: str = PATH
    ) -> None:
        response = await stack.http.get(path, headers=headers)
        body = response.json()
        assert response.status_code == response_status, body
        assert (body["bizCode"], body["errorCode"], body["statusCode"]) == (
            "FAILED",
            code,
            response_status,
        )
        assert body["msg"]

    good = signed_headers(key_id, secret, "GET", PATH)
    await refused(401, "E002", {**good, "X-Signature": "0" * 64})
    await refused(401, "E002", {k: v for k, v in good.items() if k != "X-Signature"})
    await refused(401, "E002", signed_headers(key_id, "not-the-secret", "GET", PATH))
    await refused(401, "E002", signed_headers("ak_unknown", secret, "GET", PATH))
    await refused(401, "E002", signed_headers(key_id, secret, "GET", PATH, nonce="short"))
    replay = signed_headers(key_id, secret, "GET", PATH)
    assert (await stack.http.get(PATH, headers=replay)).status_code == 200
    await refused(401, "E006_NONCE_REPLAYED", replay)
    # 310 s off, not 301: the header holds whole seconds and the gateway reads its clock later,
    # so a timestamp 301 s ahead of this second can be within 300 s of the gateway's now.
    await refused(
        401,
        "E005_TIMESTAMP_SKEW",
        signed_headers(key_id, secret, "GET", PATH, timestamp=int(time.time()) - 310),
    )
    await refused(
        401,
        "E005_TIMESTAMP_SKEW",
        signed_headers(key_id, secret, "GET", PATH, timestamp=int(time.time()) + 310),
    )
    # Signed for one account, sent for another: the path is part of the signature.
    await refused(401, "E002", good, path=f"/v1/accounts/{OTHER}/balance")
    other_path = f"/v1/accounts/{OTHER}/balance"
    await refused(
        403,
        "E008_ACCOUNT_FORBIDDEN",
        signed_headers(key_id, secret, "GET", other_path),
        path=other_path,
    )
    await refused(403, "E007_SCOPE_FORBIDDEN", signed_headers(admin_id, admin_secret, "GET", PATH))
    tx_path = f"/v1/accounts/{OTHER}/transactions"
    await refused(
        403, "E008_ACCOUNT_FORBIDDEN", signed_headers(key_id, secret, "GET", tx_path), path=tx_path
    )


async def test_wildcard_key_and_unknown_account(stack: Stack) -> None:
    key_id, secret = stack.env.create_api_key("balance:read", "*")
    missing = await signed_get(stack.http, key_id, secret, "/v1/accounts/6222000444999/balance")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "E009_NOT_FOUND"
    bad = await signed_get(stack.http, key_id, secret, "/v1/accounts/not%20valid/balance")
    assert bad.status_code in (400, 401)
