"""The gateway keeps its OpenAPI document: every operation of the ``/openapi.json`` it serves,
driven with generated requests (schemathesis, valid and invalid ones) against the running
gateway, answers no server error and nothing the document does not declare: status, media
type, body schema, headers.

Most requests are signed with a real key (all scopes, every account) by ``Signer``, which signs
the request exactly as it is sent; some with a narrow key (403s) and some not at all (401s).
Half the valid requests are steered to data that exists (funded accounts, payouts in each state,
their requestIds, a real cursor, well-formed payouts, bank-signed notifications) so that the
success answers are checked too, not only the refusals.

Every operation first answers ``STEERED_EXAMPLES`` valid, steered requests of the full key, drawn
in a fixed order (``derandomize``), of which at least one must succeed: a success found by luck
alone was missed about one run in five (a steered order was a seed in one draw of three, of the
full key in two of three; a dozen such draws of 40 found none now and then). The random
exploration follows, as before.

``CONTRACT_MAX_EXAMPLES=500`` explores further than the default, in minutes rather than seconds.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.auth import AuthBase
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.api import signed_get, signed_headers
from support.channels import MerchantKeys, cli_add_args
from support.ledger import balances
from support.merchants import account, add_merchant, materials, registration
from support.order_world import order_json
from support.recon_world import at as recon_at
from support.recon_world import statement as recon_statement
from support.settlement_world import credit_available, paid_order
from support.settlement_world import merchant as settlement_merchant

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.channel_simulator import notices
from fundhub.channel_simulator.bills import BillRow, wechatpay_bill
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair, load_private_key
from fundhub.gateway.app import create_app
from fundhub.merchants.ids import new_binding_id
from fundhub.orders import store as order_store
from fundhub.orders.postings import Part, fee_account
from fundhub.orders.request import parse_order_request, parse_refund_request
from fundhub.reconciliation.intake import take_statement
from fundhub.reconciliation.statement import LineKind, Source, StatementLine

ACCOUNT = "6222000666001"
OTHER = "6222000666002"
UNKNOWN_ACCOUNT = "6222000666999"
UNKNOWN_PAY_ID = "PAY202501010000999999"
ALL_SCOPES = (
    "balance:read,payouts:read,payouts:write,admin,audit:read,merchants:read,merchants:write,"
    "orders:write,orders:read,reconciliation:read,reconciliation:write"
)
UNKNOWN_MERCHANT = "mch_" + "0" * 26
PAYEE = {"accountName": "Acme Ltd", "accountNo": "6217000010001234567", "bankName": "ICBC"}

MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "40"))  # per operation
STEERED_EXAMPLES = 20  # per operation, before the exploration: the same every run
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# Who sends a request: mostly the full key; shrinking leads to it (the first entry).
CALLERS = ["full"] * 6 + ["narrow"] * 2 + ["anonymous"]
MODES = [GenerationMode.POSITIVE, GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

# The document the code generates; the running gateway must serve exactly this one (checked
# below), so these are all the operations it serves.
DOCUMENT: dict[str, Any] = json.loads(
    json.dumps(create_app(Settings(master_key=generate_master_key())).openapi())
)
OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item]
# The depository platform's routes (issue 10): in the document, so the test drives each of them.
DEPOSITORY_ROUTES = {
    ("POST", "/v1/merchants"),
    ("GET", "/v1/merchants"),
    ("GET", "/v1/merchants/{merchantId}"),
    ("POST", "/v1/merchants/{merchantId}/materials"),
    ("POST", "/v1/merchants/{merchantId}/settlement-account"),
    ("POST", "/v1/merchants/{merchantId}/settlement-account/verify"),
    ("POST", "/v1/merchants/{merchantId}/close"),
    ("POST", "/v1/merchants/{merchantId}/withdrawals"),
    ("GET", "/v1/merchants/{merchantId}/withdrawals/{requestId}"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders/{orderNo}"),
    ("POST", "/v1/orders/{orderNo}/refunds"),
    ("POST", "/v1/orders/{orderNo}/settle"),
    ("GET", "/v1/orders/{orderNo}/settlement"),
    ("POST", "/callbacks/wechatpay"),
    ("POST", "/callbacks/alipay"),
}


# --- server errors this test found, fixed, and kept as regressions -------------------------------
FOUND_SERVER_ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    # Postgres text cannot hold NUL: the lookup raised CharacterNotInRepertoireError (500).
    "NUL in requestId": ("/v1/payouts", [("requestId", "a\x00b")]),
    # base64url("p:99999999999999999999"): beyond a bigint, asyncpg raised DataError (500).
    "cursor beyond int64": (
        f"/v1/accounts/{ACCOUNT}/transactions",
        [("cursor", "cDo5OTk5OTk5OTk5OTk5OTk5OTk5OQ")],
    ),
}


class Signer(AuthBase):
    """Signs the request as it goes on the wire (README, "Signing requests"): the method, the
    path as the gateway reads it (percent-decoded), the query pairs, the body bytes."""

    def __init__(self, key: tuple[str, str]) -> None:
        self.key_id, self.secret = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        request.headers.update(
            signed_headers(
                self.key_id,
                self.secret,
                request.method or "GET",
                unquote(url.path),
                parse_qsl(url.query, keep_blank_values=True),
                raw,
            )
        )
        return request


class WechatPaySigner(AuthBase):
    """Signs a notification as WeChat Pay does, over the body as it goes on the wire."""

    def __init__(self, key: RSAPrivateKey, serial: str) -> None:
        self.key, self.serial = key, serial

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        request.headers.update(notices.sign_wechatpay(raw, self.key, self.serial, utcnow()).headers)
        return request


@dataclass
class ChannelKeys:
    """The channel apps the contract registers (TEST keys): the merchant's side, and the keys
    the channels sign with."""

    merchant: MerchantKeys
    wechatpay_signer: WechatPaySigner
    alipay_key: RSAPrivateKey


@dataclass
class ReconData:
    """A day's run with open discrepancies, and another day's WeChat Pay bill to upload."""

    runs: list[str]
    discrepancies: list[str]
    bill: bytes
    bill_day: str


@dataclass
class Contract:
    document: dict[str, Any]
    schema: Any  # schemathesis' OpenAPI schema
    url: str
    signers: dict[str, Signer | None]
    app_id: str
    bank_private_pem: str
    pay_ids: list[str]
    request_ids: list[str]
    seed_payouts: list[dict[str, Any]]
    cursor: str
    merchant_ids: list[str]
    merchant_nos: list[str]
    verifying: list[str]
    order_nos: list[str]
    withdrawing: list[str]  # merchantIds: one of ours, funded and verified; an unknown one
    merchant_account: str  # that merchant's ledger account: available and pending
    withdrawal_ids: list[str]
    settle_orders: list[str]  # a paid order of its own (refunds of seed-paid must not wait)
    seed_orders: list[dict[str, Any]]
    inactive_merchant: str
    channels: ChannelKeys
    recon: ReconData
    session: requests.Session = field(default_factory=requests.Session)
    ran: dict[str, Counter[str]] = field(default_factory=dict)


async def _fund(stack: Stack, record_id: str, account: str, amount: int) -> None:
    notice = build_notification(
        TransferSpec(record_id=record_id, in_acct_no=account, trans_amount=amount),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    assert (await stack.post(notice)).text == "success"


async def _submit(stack: Stack, key: tuple[str, str], body: dict[str, Any]) -> str:
    raw = json.dumps(body).encode()
    headers = signed_headers(*key, "POST", "/v1/payouts", body=raw)
    response = await stack.http.post("/v1/payouts", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    pay_id: str = response.json()["payId"]
    return pay_id


def _payout(request_id: str, account: str = ACCOUNT, **extra: Any) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "supplierId": "SUP-1",
        "payerAccountId": account,
        "amount": 100,
        "currency": "CNY",
        "payee": PAYEE,
        **extra,
    }


# Postgres 15 refuses DROP DATABASE ... WITH (FORCE) to a non-superuser while an autovacuum
# worker is in the database, which the hundreds of rows this module writes can bring about just
# as the module's database is dropped (tests/conftest.py).
_NO_AUTOVACUUM = """
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname = current_schema() LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t);
    END LOOP;
END $$
"""


async def _seed_order(
    stack: Stack,
    key_id: str,
    order_id: str,
    body: dict[str, Any],
    accounts: dict[str, str],
    state: str,
    refund_no: str | None = None,
) -> None:
    """An order as the gateway leaves it once the depository and the channel did their part
    (this stack runs no channel), and, for a paid one, a refund admitted."""
    request = parse_order_request(json.dumps(body).encode())
    parts = [
        Part(i, s.merchant_id, accounts[s.merchant_id], s.amount)
        for i, s in enumerate(request.splits)
    ]
    parts.append(Part(len(parts), None, fee_account(key_id, "CNY"), request.platform_fee))
    async with stack.env.pool.acquire() as conn, conn.transaction():
        await order_store.insert_order(
            conn,
            (order_id, key_id, request.order_no, request.fingerprint(), request.amount, "CNY",
             request.channel.value, "wx-contract", "1900000000", request.description,
             request.platform_fee,
             request.notify_url),
            parts,
        )  # fmt: skip
        await conn.execute(
            "UPDATE orders SET state = $2, depository_ref = 'DO-1', payment_params = $3,"
            " transaction_id = CASE WHEN $2 = 'PAID' THEN 'T-1' END,"
            " paid_at = CASE WHEN $2 = 'PAID' THEN now() END WHERE order_id = $1",
            order_id,
            state,
            {"code_url": "weixin://wxpay/bizpayurl?pr=1"},
        )
        if refund_no is not None:
            await conn.execute(
                "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount,"
                " allocation, state, held, source_bucket, finished_at, error_code, message)"
                " VALUES ('RFD202501010000000001', $1, $2, $3, 1, $4, 'FAILED', false, NULL,"
                " now(), 'E004_INSUFFICIENT_FUNDS', 'not there')",
                order_id,
                refund_no,
                parse_refund_request(
                    json.dumps({"refundNo": refund_no, "amount": 1}).encode()
                ).fingerprint(),
                [1] + [0] * (len(parts) - 1),
            )


@pytest.fixture(scope="module")
async def contract(stack: Stack) -> AsyncIterator[Contract]:
    """Funded accounts, payouts in each state with callback deliveries, two keys, and the
    document the running gateway serves, loaded by schemathesis."""
    env = stack.env
    await env.pool.execute(_NO_AUTOVACUUM)
    await _fund(stack, "contract-1", ACCOUNT, 300)
    await _fund(stack, "contract-2", ACCOUNT, 200)
    await _fund(stack, "contract-3", OTHER, 100)

    async def funded() -> bool:
        found = await balances(env.pool)
        return found.get(ACCOUNT, (0, 0))[0] == 500 and found.get(OTHER, (0, 0))[0] == 100

    await wait_until(funded)
    full = env.create_api_key(ALL_SCOPES, "*")
    narrow = env.create_api_key("balance:read,payouts:read", ACCOUNT)

    seeds = [
        _payout("seed-processing", callbackUrl="https://erp.example/cb"),
        _payout("seed-final", extension={"order": "O-1"}),
        _payout("seed-other", OTHER),
    ]
    processing, final, foreign = [await _submit(stack, full, body) for body in seeds]
    # What payment-worker and callback-dispatcher would have written (they are not running).
    await env.pool.execute(
        "UPDATE payouts SET state = 'RETURNED', error_code = 'E014_RETURNED',"
        " message = 'the bank returned a paid payout', bank_txn_id = 'BT-1',"
        " finished_at = now() WHERE pay_id = $1",
        final,
    )
    for state, status, delivered in (
        ("PROCESSING", "PENDING", False),
        ("SUCCESS", "GAVE_UP", True),
    ):
        delivery_id = await env.pool.fetchval(
            "INSERT INTO callback_deliveries (pay_id, state, url, key_id, body, status, attempts,"
            " delivered_at) VALUES ($1, $2, 'https://erp.example/cb', $3, '\\x7b7d', $4, 2,"
            " CASE WHEN $5 THEN now() END) RETURNING delivery_id",
            processing,
            state,
            full[0],
            status,
            delivered,
        )
        await env.pool.execute(
            "INSERT INTO callback_attempts (delivery_id, status_code, error, duration_ms)"
            " VALUES ($1, 500, NULL, 12), ($1, NULL, 'timeout', 10000)",
            delivery_id,
        )
    merchant_ids, merchant_nos, verifying = await _merchants(stack, full)
    merchants = [await add_merchant(env.pool, full[0]) for _ in range(2)]
    seed_orders = [
        order_json("seed-awaiting", [(merchants[0], 600), (merchants[1], 300)], 100),
        order_json("seed-paid", [(merchants[0], 900)], 100, notifyUrl="https://erp.example/o"),
    ]
    accounts = {m.merchant_id: m.account_id for m in merchants}
    await _seed_order(
        stack, full[0], "ORD202501010000000001", seed_orders[0], accounts, "AWAITING_PAYMENT"
    )
    await _seed_order(
        stack, full[0], "ORD202501010000000002", seed_orders[1], accounts, "PAID", "seed-refund"
    )
    failed = order_json("seed-failed", [(merchants[0], 500)], 0)  # read with its errorCode
    await _seed_order(stack, full[0], "ORD202501010000000003", failed, accounts, "FAILED")
    await env.pool.execute(
        "UPDATE orders SET error_code = 'E036_DEPOSITORY_REFUSED', message = 'payee unknown'"
        " WHERE order_id = 'ORD202501010000000003'"
    )
    page = await signed_get(
        stack.http, *full, f"/v1/accounts/{ACCOUNT}/transactions", [("limit", "1")]
    )
    assert page.status_code == 200 and page.json()["nextCursor"], page.text

    withdrawing, withdrawal_ids, settle_orders, merchant_account = await _settlement_data(
        stack, full
    )
    merchant, platform, alipay = MerchantKeys(), generate_rsa_keypair(), generate_rsa_keypair()
    serial = "CONTRACT0SERIAL"
    sim_keys = {
        "wechatpay": {"platformSerial": serial, "platformPublicKey": platform[1]},
        "alipay": {"alipayPublicKey": alipay[1]},
    }
    for args in cli_add_args(env.tmp, merchant, sim_keys):
        env.cli(*args)
    channels = ChannelKeys(
        merchant,
        WechatPaySigner(load_private_key(platform[0]), serial),
        load_private_key(alipay[0]),
    )

    served: httpx.Response = await stack.http.get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    result = Contract(
        document=document,
        schema=schemathesis.openapi.from_dict(document),
        url=stack.gateway.url,
        signers={"full": Signer(full), "narrow": Signer(narrow), "anonymous": None},
        app_id=env.app_id,
        bank_private_pem=env.bank.private_pem,
        pay_ids=[processing, final, foreign, UNKNOWN_PAY_ID],
        request_ids=[*(body["requestId"] for body in seeds), "never-sent"],
        seed_payouts=seeds,
        cursor=page.json()["nextCursor"],
        merchant_ids=merchant_ids,
        merchant_nos=merchant_nos,
        verifying=verifying,
        order_nos=["seed-paid", "seed-awaiting", "seed-failed", "never-ordered"],
        seed_orders=seed_orders,
        inactive_merchant=(await add_merchant(env.pool, full[0], state="REJECTED")).merchant_id,
        withdrawing=withdrawing,
        merchant_account=merchant_account,
        withdrawal_ids=withdrawal_ids,
        settle_orders=settle_orders,
        channels=channels,
        recon=await _recon_data(stack),
    )
    yield result
    result.session.close()


async def _recon_data(stack: Stack) -> ReconData:
    """A WeChat Pay statement of a day naming orders the platform never had (open
    discrepancies to read and act on), imported as ``fundhub recon import`` does."""
    env = stack.env
    day = date(2025, 1, 2)
    lines = [
        StatementLine(0, LineKind.PAYMENT, f"ORD-GHOST-{i}", f"4200{i}", 100 + i, 1, "SUCCESS",
                      recon_at(day, 12, i))
        for i in range(3)
    ]  # fmt: skip
    st = recon_statement(Source.WECHATPAY, day, lines)
    taken = await take_statement(
        env.pool, st, name="seed.csv", sha256="seed", by="contract", settings=env.settings
    )
    assert taken.run is not None
    found = await env.pool.fetch(
        "SELECT discrepancy_id FROM recon_discrepancies WHERE run_id = $1 ORDER BY 1",
        taken.run.run_id,
    )
    ids = [r["discrepancy_id"] for r in found]
    upload_day = date(2025, 1, 3)
    bill = wechatpay_bill(
        [BillRow("PAYMENT", recon_at(upload_day, 9), "wx", "1900000001", "ORD-UP-1", "42001",
                 200, "goods", "SUCCESS", fee_fen=1)]
    )  # fmt: skip
    unknown_run = "RCN20250102W0000000000"
    return ReconData(
        runs=[taken.run.run_id] * 3 + [unknown_run],
        discrepancies=[*ids, f"{unknown_run}-0000001"],
        bill=bill,
        bill_day=upload_day.isoformat(),
    )


async def _register(stack: Stack, key: tuple[str, str], body: dict[str, Any]) -> str:
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = signed_headers(*key, "POST", "/v1/merchants", body=raw)
    response = await stack.http.post("/v1/merchants", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    merchant_id: str = response.json()["merchantId"]
    return merchant_id


async def _merchants(stack: Stack, full: tuple[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Merchants in each state the answers can show (what payment-worker would have written,
    as it is not running): one still in review, one ACTIVE with a second version under review
    and a verified settlement account, one REJECTED, one of another tenant, and an unknown id;
    and, for the verification alone, one ACTIVE awaiting a micro-deposit's amount."""
    pool = stack.env.pool
    other = stack.env.create_api_key("merchants:read,merchants:write", "*")
    numbers = ["C-PENDING", "C-ACTIVE", "C-REJECTED", "C-VERIFY"]
    pending, active, rejected, verify = [
        await _register(stack, full, registration(n, notifyUrl="https://erp.example/m"))
        for n in numbers
    ]
    foreign = await _register(stack, other, registration("C-FOREIGN"))
    second = {**materials("Acme Trading Ltd"), "licence": None, "type": "INDIVIDUAL"}
    in_use, awaiting, waiting = new_binding_id(), new_binding_id(), new_binding_id()
    await pool.execute(
        "INSERT INTO merchant_settlement_accounts (binding_id, merchant_id, account_no,"
        " account_name, bank_name, fingerprint, state, verified_at) VALUES"
        " ($2, $1, '6222000011112222', 'Acme', 'PAB', 'f', 'VERIFIED', now()),"
        " ($3, $1, '6222000011113333', 'Acme', 'PAB', 'g', 'AWAITING_CONFIRMATION', NULL),"
        " ($5, $4, '6222000011115555', 'Acme', 'PAB', 'h', 'AWAITING_CONFIRMATION', NULL)",
        active,
        in_use,
        awaiting,
        verify,
        waiting,
    )
    await pool.execute(
        "INSERT INTO merchant_versions (merchant_id, version, state, materials, fingerprint)"
        " VALUES ($1, 2, 'PENDING_REVIEW', $2, 'f2')",
        active,
        second,
    )
    await pool.execute(
        "UPDATE merchant_versions SET state = 'APPROVED', reviewed_at = now()"
        " WHERE merchant_id = $1 AND version = 1",
        active,
    )
    await pool.execute(
        "UPDATE merchants SET state = 'ACTIVE', approved_version = 1, latest_version = 2,"
        " version_pending = true, member_no = 'M1', settlement_binding = $2"
        " WHERE merchant_id = $1",
        active,
        in_use,
    )
    await pool.execute(
        "UPDATE merchants SET state = 'ACTIVE', approved_version = 1, version_pending = false"
        " WHERE merchant_id = $1",
        verify,
    )
    await pool.execute(
        "UPDATE merchants SET state = 'REJECTED', version_pending = false,"
        " reason = 'refused by the review' WHERE merchant_id = $1",
        rejected,
    )
    merchant_ids = [pending, active, rejected, foreign, UNKNOWN_MERCHANT]
    return merchant_ids, [*numbers, "C-NEVER"], [verify, foreign, UNKNOWN_MERCHANT]


async def _settlement_data(
    stack: Stack, full: tuple[str, str]
) -> tuple[list[str], list[str], list[str], str]:
    """A merchant with a verified account and money to withdraw, one withdrawal made; and a
    paid order to settle (its settlement stays PENDING: payment-worker is not running)."""
    pool = stack.env.pool
    receiver = await settlement_merchant(pool, full[0], "Contract Co")
    settle = await paid_order(pool, full[0], [(receiver, 100)], order_no="seed-settle")
    path = f"/v1/orders/{settle.order_no}/settle"  # a settlement to read (PENDING)
    answer = await stack.http.post(path, headers=signed_headers(*full, "POST", path))
    assert answer.status_code == 202, answer.text
    await credit_available(pool, receiver.account_id, 1_000_000)
    raw = json.dumps({"requestId": "steered-w0", "amount": 1}).encode()
    path = f"/v1/merchants/{receiver.merchant_id}/withdrawals"
    response = await stack.http.post(
        path, content=raw, headers=signed_headers(*full, "POST", path, body=raw)
    )
    assert response.status_code == 202, response.text
    # The ones that exist first and more often: a read succeeds only when both ids are right.
    return (
        [receiver.merchant_id] * 3 + [UNKNOWN_MERCHANT],
        ["steered-w0"] * 3 + ["never-sent"],
        [settle.order_no, settle.order_no, "seed-awaiting", "never-ordered"],
        receiver.account_id,
    )


def _payout_bodies(seeds: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed payouts: the seeds again (202, or 200 for the final one), new ones (202),
    and a few requestIds reused with other bodies (409)."""
    fresh = st.fixed_dictionaries(
        {
            "requestId": st.one_of(
                st.sampled_from(["steered-0", "steered-1"]),
                st.uuids().map(lambda u: f"steered-{u.hex}"),
            ),
            "supplierId": st.just("SUP-2"),
            "payerAccountId": st.sampled_from([ACCOUNT, OTHER]),
            "amount": st.sampled_from([100, 200]),
            "currency": st.sampled_from(["CNY", "RMB", "USD"]),
            "payee": st.just(PAYEE),
        },
        optional={
            "purpose": st.just("contract"),
            "callbackUrl": st.just("https://erp.example/cb"),
            "extension": st.just({"order": "O-2"}),
        },
    )
    return st.one_of(st.sampled_from(seeds), fresh)


def _order_bodies(contract: Contract) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed orders: the seeds again (200: a completed order calls no channel), their
    orderNos with other bodies (409), and new ones naming a merchant that is not ACTIVE (422).
    A new order that fits would answer 503 here: this stack runs no channel to call."""
    fresh = st.fixed_dictionaries(
        {
            "orderNo": st.uuids().map(lambda u: f"steered-{u.hex}"),
            "amount": st.just(1_000),
            "currency": st.sampled_from(["CNY", "RMB"]),
            "channel": st.sampled_from(["WECHATPAY", "ALIPAY"]),
            "description": st.just("contract"),
            "splits": st.just([{"merchantId": contract.inactive_merchant, "amount": 1_000}]),
            "platformFee": st.just(0),
        }
    )
    reused = st.sampled_from(contract.seed_orders).map(lambda o: {**o, "description": "other"})
    return st.one_of(st.sampled_from(contract.seed_orders), fresh, reused)


def _refund_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """The seeded refund again (200, FAILED), or a new one of 1 fen (202 on the paid order,
    409 E034 on the unpaid one, 422 E033 once the paid order has nothing left)."""
    return st.fixed_dictionaries(
        {
            "refundNo": st.one_of(st.just("seed-refund"), st.uuids().map(lambda u: u.hex)),
            "amount": st.just(1),
        }
    )


def _steer(case: Any, data: st.DataObject, contract: Contract) -> None:
    """Point a valid case at data that exists, so that it can succeed."""
    draw = data.draw
    path, method = case.operation.path, case.method.upper()
    if "accountId" in case.path_parameters:
        accounts = [ACCOUNT, contract.merchant_account, OTHER, UNKNOWN_ACCOUNT]
        case.path_parameters["accountId"] = draw(st.sampled_from(accounts), label="accountId")
    if "payId" in case.path_parameters:
        case.path_parameters["payId"] = draw(st.sampled_from(contract.pay_ids), label="payId")
    if (method, path) == ("GET", "/v1/payouts"):
        request_id = draw(st.sampled_from(contract.request_ids), label="requestId")
        case.query = {**(case.query or {}), "requestId": request_id}
    if path.endswith("/transactions") and draw(st.booleans(), label="real cursor"):
        case.query = {**(case.query or {}), "cursor": contract.cursor}
    if (method, path) == ("POST", "/v1/payouts"):
        case.body = draw(_payout_bodies(contract.seed_payouts), label="payout")
    if "merchantId" in case.path_parameters:
        # Each route's merchant that can succeed, drawn more often than the others (the
        # one awaiting a micro-deposit is closed last: the close runs after the verification).
        pending, active, rejected, *others = contract.merchant_ids
        verify, *strangers = contract.verifying
        choices = {
            "/materials": [pending, rejected] * 3 + [active, *others],
            "/settlement-account": [active] * 5 + [pending, rejected, *others],
            "/verify": [verify] * 5 + strangers,
            "/close": [verify] * 5 + strangers,
        }.get(path[path.rfind("/") :], contract.merchant_ids)
        case.path_parameters["merchantId"] = draw(st.sampled_from(choices), label="merchantId")
    if (method, path) == ("GET", "/v1/merchants"):
        merchant_no = draw(st.sampled_from(contract.merchant_nos), label="merchantNo")
        case.query = {**(case.query or {}), "merchantNo": merchant_no}
    if (method, path) == ("POST", "/v1/merchants"):
        merchant_no = draw(st.sampled_from([*contract.merchant_nos, "C-NEW"]), label="merchantNo")
        case.body = registration(merchant_no, notifyUrl="https://erp.example/m")
    if path.endswith("/materials"):
        case.body = materials(draw(st.sampled_from(["Acme Trading", "Acme 2"]), label="name"))
    if path.endswith("/settlement-account"):
        case.body = account(draw(st.sampled_from(["6222000011112222", "6222000011114444"])))
    if path.endswith("/verify"):
        case.body = {"amount": draw(st.integers(1, 50), label="amount")}
    if "orderNo" in case.path_parameters:
        # The paid order first: Hypothesis favours a list's first items, and refunds of it can
        # be admitted (or read again).
        case.path_parameters["orderNo"] = draw(st.sampled_from(contract.order_nos), label="orderNo")
    if (method, path) == ("POST", "/v1/orders"):
        case.body = draw(_order_bodies(contract), label="order")
    if (method, path) == ("POST", "/v1/orders/{orderNo}/refunds"):
        case.body = draw(_refund_bodies(), label="refund")
    if path.endswith(("/settle", "/settlement")):
        order_no = draw(st.sampled_from(contract.settle_orders), label="settle")
        case.path_parameters["orderNo"] = order_no
    if path.startswith("/v1/merchants/{merchantId}/withdrawals"):
        merchant_id = draw(st.sampled_from(contract.withdrawing), label="merchantId")
        case.path_parameters["merchantId"] = merchant_id
    if "requestId" in case.path_parameters:
        request_id = draw(st.sampled_from(contract.withdrawal_ids), label="withdrawal")
        case.path_parameters["requestId"] = request_id
    if (method, path) == ("POST", "/v1/merchants/{merchantId}/withdrawals"):
        case.body = {
            "requestId": draw(st.sampled_from(["steered-w0", "steered-w1"]), label="wid"),
            "amount": draw(st.sampled_from([1, 2]), label="amount"),
        }
    if (method, path) == ("POST", "/callbacks/bank"):
        record = draw(st.sampled_from(["steered-1", "steered-2"]), label="record")
        spec = TransferSpec(record_id=record, in_acct_no=ACCOUNT, trans_amount=1)
        case.body = build_notification(spec, contract.app_id, contract.bank_private_pem)
    _steer_recon(case, data, contract.recon)
    merchant = contract.channels.merchant
    order = draw(st.sampled_from(["steered-1", "steered-2"]), label="order")
    if (method, path) == ("POST", "/callbacks/wechatpay"):
        resource = notices.transaction_resource(
            appid=merchant.appid, mchid=merchant.mchid, out_trade_no=order,
            transaction_id="4200000000000000000000000001", total_fen=1, success_time=utcnow(),
        )  # fmt: skip
        body = notices.wechatpay_body(
            notices.notification_id(), "TRANSACTION.SUCCESS", resource,
            merchant.apiv3_key.encode(), utcnow(),
        )  # fmt: skip
        case.body = json.loads(body)  # signed as sent, by WechatPaySigner
    if (method, path) == ("POST", "/callbacks/alipay"):
        fields = notices.alipay_fields(
            app_id=merchant.alipay_app_id, seller_id=merchant.seller_id, out_trade_no=order,
            trade_no="2026000000000000000000000001", trade_status="TRADE_SUCCESS", total_fen=1,
            subject="contract", gmt_create=utcnow(), gmt_payment=utcnow(),
        )  # fmt: skip
        signed = notices.sign_alipay(fields, contract.channels.alipay_key, utcnow())
        case.body = dict(parse_qsl(signed.decode()))


_RECON_ACTIONS = [
    {"action": "carryOver", "reason": "ask the channel"},
    {"action": "reopen", "reason": "again"},
    {"action": "writeOff", "reason": "below the threshold"},
    {"action": "propose", "reason": "x", "adjustment": {"accountId": ACCOUNT, "amountFen": 1}},
]


def _steer_recon(case: Any, data: st.DataObject, recon: ReconData) -> None:
    draw = data.draw
    path, method = case.operation.path, case.method.upper()
    if not path.startswith("/v1/reconciliation"):
        return
    if "runId" in case.path_parameters:
        case.path_parameters["runId"] = draw(st.sampled_from(recon.runs), label="runId")
    if "discrepancyId" in case.path_parameters:
        chosen = draw(st.sampled_from(recon.discrepancies), label="discrepancyId")
        case.path_parameters["discrepancyId"] = chosen
    if (method, path) == ("GET", "/v1/reconciliation/discrepancies"):
        run_id = draw(st.sampled_from(recon.runs), label="runId")
        case.query = {k: v for k, v in (case.query or {}).items() if k != "cursor"}
        case.query["runId"] = run_id
    if (method, path) == ("GET", "/v1/reconciliation/runs"):
        case.query = {"source": "wechatpay", "date": "2025-01-02"}
    if path.endswith("/actions"):
        case.body = draw(st.sampled_from(_RECON_ACTIONS), label="action")
    if (method, path) == ("POST", "/v1/reconciliation/statements"):
        case.query = {"source": "wechatpay", "date": recon.bill_day, "name": "bill.csv"}
        case.body = recon.bill


@pytest.fixture(scope="module")
def summary(contract: Contract) -> Iterator[dict[str, Counter[str]]]:
    """What was sent to each operation and what it answered (shown with ``-s``)."""
    yield contract.ran
    for operation, counts in contract.ran.items():
        print(f"{operation}: {dict(sorted(counts.items()))}")


def test_the_gateway_serves_the_document_its_code_generates(contract: Contract) -> None:
    assert contract.document == DOCUMENT
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            # Invalid values are 400 E001: a 422 is only one a route declares (E004, E032...).
            declared = operation["responses"].get("422", {}).get("description", "")
            assert "422" not in operation["responses"] or "E0" in declared
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]


def test_every_route_served_is_in_the_document() -> None:
    """A route left out of the schema would go unchecked by the test below."""
    app = create_app(Settings(master_key=generate_master_key()))
    served = {
        (method, getattr(route, "path", ""))
        for route in app.routes
        for method in set(getattr(route, "methods", None) or ()) - {"HEAD"}
    }
    assert served - {("GET", "/openapi.json")} == set(OPERATIONS)
    assert set(OPERATIONS) >= DEPOSITORY_ROUTES


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_one_the_document_declares(
    contract: Contract, summary: dict[str, Counter[str]], method: str, path: str
) -> None:
    operation = contract.schema[path][method]
    counts = summary.setdefault(f"{method} {path}", Counter())
    started = time.monotonic()

    steered = Counter[str]()
    _exercise(contract, operation, path, steered, explore=False)
    successes = sum(n for key, n in steered.items() if key.startswith("http 2"))
    assert successes > 0, f"no steered request succeeded: {dict(steered)}"

    explored = Counter[str]()
    _exercise(contract, operation, path, explored, explore=True)
    assert explored["anonymous"] < explored["cases"] / 2, dict(explored)
    counts.update(steered + explored)
    counts["steered successes"] = successes
    counts["seconds"] = round(time.monotonic() - started)


def _exercise(
    contract: Contract, operation: Any, path: str, counts: Counter[str], *, explore: bool
) -> None:
    """Send generated requests to one operation and check every answer against the document.

    ``explore``: each request's mode (valid or not), steering and caller drawn at random;
    otherwise valid requests of the full key, all steered, drawn the same way every run."""
    strategies = {mode: operation.as_strategy(mode) for mode in GenerationMode}

    @settings(
        max_examples=MAX_EXAMPLES if explore else STEERED_EXAMPLES,
        derandomize=not explore,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(data=st.data())
    def exercise(data: st.DataObject) -> None:
        # An operation without constrained input has no invalid variant: that draw is then
        # rejected and Hypothesis draws again (the valid one is always possible).
        mode = data.draw(st.sampled_from(MODES), label="mode") if explore else MODES[0]
        case = data.draw(strategies[mode], label="case")
        steered = not explore or (
            mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="steer")
        )
        if steered:
            _steer(case, data, contract)
        caller = data.draw(st.sampled_from(CALLERS), label="caller") if explore else CALLERS[0]
        sent = {"base_url": contract.url, "session": contract.session}
        auth = contract.signers[caller]
        if steered and path == "/callbacks/wechatpay":
            auth = contract.channels.wechatpay_signer  # WeChat Pay signs its own notifications
        response = case.call(**sent, auth=auth, timeout=10)
        counts["cases"] += 1
        counts[f"{mode.value}{'-steered' if steered else ''}"] += 1
        counts[caller] += 1
        counts[f"http {response.status_code}"] += 1
        # A body over the route's limit is refused (413) before it is read: invalid or not, it
        # is rejected, which schemathesis' negative-data check does not count as a rejection.
        checks = [
            c for c in CHECKS if response.status_code != 413 or c is not negative_data_rejection
        ]
        case.validate_response(response, checks=checks, transport_kwargs={**sent, "auth": auth})

    exercise()


@pytest.mark.parametrize("name", list(FOUND_SERVER_ERRORS))
def test_found_server_errors_are_now_refusals(contract: Contract, name: str) -> None:
    path, query = FOUND_SERVER_ERRORS[name]
    response = contract.session.get(
        contract.url + path, params=query, auth=contract.signers["full"], timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "E001"
