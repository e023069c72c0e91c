"""Issue 9's defects at the gateway, through the real stack: each test failed before its fix."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from support.api import signed_get, signed_headers
from support.ledger import counts
from support.processes import ops_url

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification, resign
from fundhub.common.signing import body_signature


async def test_a_stored_app_that_excludes_biz_content_verifies_nothing(stack: Stack) -> None:
    """Defect 2, defence in depth: a row stored before the CLI refused it (or by hand) that
    leaves ``biz_content`` unsigned would let one signature authorise any credit."""
    app_id = "20990101000000000000000003"
    await stack.env.pool.execute(
        "INSERT INTO bank_apps (app_id, public_key_pem, sign_excludes) VALUES ($1, $2, $3)",
        app_id,
        stack.env.bank.public_pem,
        ["sign", "biz_content"],
    )
    excludes = ("sign", "biz_content")
    notice = build_notification(
        TransferSpec(record_id="unsafe-1", in_acct_no="6222000555901", trans_amount=100),
        app_id,
        stack.env.bank.private_pem,
        excludes=excludes,
    )
    biz = json.loads(notice["biz_content"])
    biz["trans_amount"] = "99999999"
    notice["biz_content"] = json.dumps(biz)
    before = await counts(stack.env.pool)
    response = await stack.post(notice)
    assert response.status_code == 401 and response.text.startswith("fail"), response.text
    assert await counts(stack.env.pool) == before


# --- defect 8: smaller leaks ---------------------------------------------------------------

ACCOUNT = "6222000555911"
OTHER = "6222000555912"


def _payout_body(payer: str, request_id: str, **extra: Any) -> bytes:
    return json.dumps(
        {
            "requestId": request_id,
            "supplierId": "SUP1",
            "payerAccountId": payer,
            "amount": 100,
            "currency": "CNY",
            "payee": {"accountName": "A", "accountNo": "6222000011112222", "bankName": "B"},
            **extra,
        }
    ).encode()


async def _post_payout(stack: Stack, key: tuple[str, str], body: bytes) -> httpx.Response:
    headers = signed_headers(*key, "POST", "/v1/payouts", None, body)
    headers["Content-Type"] = "application/json"
    return await stack.http.post("/v1/payouts", content=body, headers=headers)


def _refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["errorCode"], body["msg"]


async def test_another_tenants_payout_answers_exactly_like_a_missing_one(stack: Stack) -> None:
    mine = stack.env.create_api_key("payouts:write,payouts:read", ACCOUNT)
    theirs = stack.env.create_api_key("payouts:write,payouts:read", OTHER)
    created = await _post_payout(stack, theirs, _payout_body(OTHER, f"r-{uuid.uuid4().hex}"))
    assert created.status_code == 202, created.text
    foreign = created.json()["payId"]
    missing = foreign[:-4] + ("0000" if not foreign.endswith("0000") else "0001")
    for suffix in ("", "/callbacks"):
        answers = [
            await signed_get(stack.http, *mine, f"/v1/payouts/{pay_id}{suffix}")
            for pay_id in (foreign, missing)
        ]
        shapes = [
            (status, code, msg.replace(pay_id, "ID"))
            for (status, code, msg), pay_id in zip(
                map(_refusal, answers), (foreign, missing), strict=True
            )
        ]
        assert shapes[0] == shapes[1] == (404, "E009_NOT_FOUND", "payout ID not found"), shapes
        assert sorted(answers[0].json()) == sorted(answers[1].json())
        for answer in answers:
            assert answer.headers["X-Signature"] == body_signature(mine[1], answer.content)


async def test_authenticated_refusals_on_accounts_are_signed(stack: Stack) -> None:
    key_id, secret = stack.env.create_api_key("balance:read", "*")
    cases: list[tuple[str, list[tuple[str, str]]]] = [
        ("/v1/accounts/bad.account/balance", []),
        ("/v1/accounts/" + "9" * 33 + "/transactions", []),
        (f"/v1/accounts/{ACCOUNT}/transactions", [("limit", "0")]),
        (f"/v1/accounts/{ACCOUNT}/transactions", [("limit", "abc")]),
        (f"/v1/accounts/{ACCOUNT}/transactions", [("limit", "201")]),
        (f"/v1/accounts/{ACCOUNT}/transactions", [("cursor", "c" * 65)]),
        # base64url("p:99999999999999999999"): beyond a bigint (a 500 once, then unsigned)
        (f"/v1/accounts/{ACCOUNT}/transactions", [("cursor", "cDo5OTk5OTk5OTk5OTk5OTk5OTk5OQ")]),
    ]
    for path, query in cases:
        response = await signed_get(stack.http, key_id, secret, path, query)
        assert response.status_code == 400, (path, query, response.text)
        assert response.json()["errorCode"] == "E001"
        assert response.headers.get("X-Signature") == body_signature(secret, response.content), (
            path,
            query,
        )


async def test_no_redirect_built_from_the_host_header(stack: Stack) -> None:
    for path in ("/v1/payouts/", "/v1/accounts/6222000555911/balance/", "/healthz/"):
        response = await stack.http.get(path, headers={"Host": "attacker.example"})
        assert not 300 <= response.status_code < 400, (path, response.status_code)
        assert "location" not in response.headers


async def test_one_401_text_for_an_unknown_key_and_a_bad_signature(stack: Stack) -> None:
    key_id, secret = stack.env.create_api_key("balance:read", ACCOUNT)
    path = f"/v1/accounts/{ACCOUNT}/balance"
    bad_signature = {**signed_headers(key_id, secret, "GET", path), "X-Signature": "0" * 64}
    unknown_key = signed_headers("ak_00000000000000000000", secret, "GET", path)
    answers = [await stack.http.get(path, headers=h) for h in (bad_signature, unknown_key)]
    assert _refusal(answers[0]) == _refusal(answers[1])
    assert _refusal(answers[0])[:2] == (401, "E002")


async def test_no_banner_no_public_docs_or_metrics_and_no_caching(stack: Stack) -> None:
    key_id, secret = stack.env.create_api_key("balance:read", ACCOUNT)
    health = await stack.http.get("/healthz")
    assert health.status_code == 200
    assert "server" not in health.headers
    for path in ("/docs", "/redoc", "/metrics"):
        assert (await stack.http.get(path)).status_code == 404, path
    ops = ops_url(stack.gateway)
    async with httpx.AsyncClient(base_url=ops, timeout=10) as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
    refused = await signed_get(stack.http, key_id, secret, f"/v1/accounts/{OTHER}/balance")
    assert refused.status_code == 403
    assert refused.headers.get("cache-control") == "no-store"


async def test_duplicate_keys_are_refused(stack: Stack) -> None:
    key = stack.env.bank.private_pem
    notice = build_notification(
        TransferSpec(record_id="dup-1", in_acct_no="6222000555921", trans_amount=100),
        stack.env.app_id,
        key,
    )
    raw = json.dumps(notice)
    # The same public parameter twice (last one wins, in a parser that allows it).
    twice = raw[:-1] + ', "charset": "GBK"}'
    response = await stack.http.post(
        "/callbacks/bank", content=twice.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "duplicate" in response.text, response.text
    # A key twice inside biz_content, correctly signed: two readings of one signed text.
    biz = notice["biz_content"]
    doubled = biz[:-1] + ', "trans_amount": "99999999"}'
    response = await stack.post(resign({**notice, "biz_content": doubled}, key))
    assert response.status_code == 400 and "duplicate" in response.text, response.text


async def test_unsigned_empty_parameters_are_not_stored(stack: Stack) -> None:
    notice = build_notification(
        TransferSpec(record_id="empty-1", in_acct_no="6222000555922", trans_amount=100),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    response = await stack.post({**notice, "injected": "", "app_auth_token": ""})
    assert response.text == "success", response.text

    async def stored() -> bool:
        count = await stack.env.pool.fetchval(
            "SELECT count(*) FROM bank_notifications WHERE record_id = 'empty-1'"
        )
        return bool(count)

    await wait_until(stored)
    params = await stack.env.pool.fetchval(
        "SELECT params FROM bank_notifications WHERE record_id = 'empty-1'"
    )
    stored_params = json.loads(params) if isinstance(params, str) else params
    assert "injected" not in stored_params and "app_auth_token" not in stored_params


# --- defects 4 and 6: what a caller can make the gateway read and parse ----------------------


async def test_bank_callback_bounds_keys_before_the_signature(stack: Stack) -> None:
    """The attacker's body (65,000 top-level keys, a bogus signature) within the route's limit
    is refused for its shape, not verified; one over the limit is not even read."""
    base = build_notification(
        TransferSpec(record_id="keys-1", in_acct_no="6222000555931", trans_amount=100),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    many = {**base, **{f"k{i}": "v" for i in range(20_000)}}
    response = await stack.post(many)
    assert response.status_code == 400 and "keys" in response.text, response.text
    huge = {**base, **{f"k{i}": "v" for i in range(65_000)}}
    body = json.dumps(huge).encode()
    assert len(body) > 256 * 1024
    response = await stack.http.post(
        "/callbacks/bank", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.text.startswith("fail"), response.text


async def test_route_body_limits_fit_each_route(stack: Stack) -> None:
    key = stack.env.create_api_key("payouts:write,payouts:read,balance:read", "*")
    # A GET carries no body.
    path = f"/v1/accounts/{ACCOUNT}/balance"
    headers = signed_headers(*key, "GET", path, None, b"x")
    response = await stack.http.request("GET", path, content=b"x", headers=headers)
    assert response.status_code == 413, response.text
    # A payout is a few KiB: 70,000 extension keys do not get in at all.
    extension = {f"k{i}": 0 for i in range(70_000)}
    body = _payout_body(ACCOUNT, "big-1", extension=extension)
    response = await _post_payout(stack, key, body)
    assert response.status_code == 413, response.text
    # Within the limit: too many keys, or too deep, is refused before validation.
    wide = _payout_body(ACCOUNT, "wide-1", extension={f"k{i}": 0 for i in range(300)})
    response = await _post_payout(stack, key, wide)
    assert response.status_code == 400 and "keys" in response.json()["msg"], response.text
    deep: Any = 0
    for _ in range(12):
        deep = {"d": deep}
    response = await _post_payout(stack, key, _payout_body(ACCOUNT, "deep-1", extension=deep))
    assert response.status_code == 400 and "deeper" in response.json()["msg"], response.text
