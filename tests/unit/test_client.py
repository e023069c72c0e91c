"""fundhub.client against a fake gateway on httpx.MockTransport (the client's own logic only).

The fake checks every request's signature the way the gateway does and signs its answers with
the key's secret; scripted faults (dropped connections, 5xx, forged answers) test the retries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.datastructures import QueryParams

from fundhub.client import (
    AsyncFundhubClient,
    Balance,
    Conflict,
    Forbidden,
    FundhubClient,
    FundhubError,
    InvalidRequest,
    NetworkError,
    NotFound,
    Payee,
    Payout,
    ServerError,
    SignatureMismatch,
    Unauthorized,
    UnexpectedPayload,
)
from fundhub.client.exchange import backoff_delay
from fundhub.common import signing as server

BASE = "http://gateway.test"
KEY_ID = "ak_test"
SECRET = "api-secret-for-unit-tests-0123456789"
ACCOUNT = "6222020000000001"
PAYEE = Payee("Acme Supplies Ltd", "6217000010001234567", "Industrial and Commercial Bank")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Fault = Callable[[httpx.Request], httpx.Response]


def signed(status: int, payload: Any, secret: str = SECRET) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.Response(
        status, content=body, headers={"X-Signature": server.body_signature(secret, body)}
    )


def refusal(status: int, code: str, msg: str) -> dict[str, Any]:
    return {"statusCode": status, "bizCode": "FAILED", "errorCode": code, "msg": msg}


def drop_after_processing(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset by peer", request=request)


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def unavailable(request: httpx.Request) -> httpx.Response:
    return signed(503, refusal(503, "E013_UNAVAILABLE", "kafka unavailable; retry"))


@dataclass
class FakeGateway:
    """Idempotent by requestId like the real one; ``faults`` replace the next answers."""

    faults: list[Fault] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    movements: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, _, raw_query = request.url.raw_path.decode().partition("?")
        query = QueryParams(raw_query)
        expected = server.sign_api_request(
            SECRET,
            request.method,
            path,
            query.multi_items(),
            request.headers["X-Timestamp"],
            request.headers["X-Nonce"],
            request.content,
        )
        if request.headers.get("X-Api-Key") != KEY_ID or not server.verify_hex_signature(
            expected, request.headers.get("X-Signature", "")
        ):
            return signed(401, refusal(401, "E002", "signature does not match"))
        answer = self._route(request, path, query)
        if self.faults:
            return self.faults.pop(0)(request)
        return answer

    def _route(self, request: httpx.Request, path: str, query: QueryParams) -> httpx.Response:
        if request.method == "POST" and path == "/v1/payouts":
            body = json.loads(request.content)
            rid = body["requestId"]
            if rid not in self.payouts:
                self.payouts[rid] = {
                    "payId": f"PAY20251121{len(self.payouts) + 1:010d}",
                    "requestId": rid,
                    "bizCode": "PROCESSING",
                    "supplierId": body["supplierId"],
                    "amount": body["amount"],
                    "currency": "CNY" if body["currency"] == "RMB" else body["currency"],
                    "timestamp": "2025-11-21T08:00:00Z",
                    "extension": body.get("extension", {}),
                }
            return signed(202, {"statusCode": 202, **self.payouts[rid]})
        if request.method == "GET" and path == "/v1/payouts":
            found = self.payouts.get(query.get("requestId", ""))
            if found is None:
                return signed(404, refusal(404, "E009_NOT_FOUND", "payout not found"))
            return signed(200, {"statusCode": 200, **found})
        if request.method == "GET" and path.startswith("/v1/payouts/"):
            pay_id = path.rsplit("/", 1)[1]
            for payout in self.payouts.values():
                if payout["payId"] == pay_id:
                    return signed(200, {"statusCode": 200, **payout})
            return signed(404, refusal(404, "E009_NOT_FOUND", "payout not found"))
        if path == f"/v1/accounts/{ACCOUNT}/balance":
            return signed(200, balance_wire(self.movements[:10]))
        if path == f"/v1/accounts/{ACCOUNT}/transactions":
            start = int(query["cursor"]) if "cursor" in query else 0
            limit = int(query["limit"])
            items = self.movements[start : start + limit]
            more = start + limit < len(self.movements)
            return signed(
                200,
                {
                    "statusCode": 200,
                    "bizCode": "SUCCESS",
                    "accountId": ACCOUNT,
                    "items": items,
                    "nextCursor": str(start + limit) if more else None,
                },
            )
        return signed(404, refusal(404, "E009_NOT_FOUND", f"no route {path}"))


def movement_wire(n: int) -> dict[str, Any]:
    return {
        "movementId": 1000 - n,
        "entryId": f"00000000-0000-0000-0000-{n:012d}",
        "kind": "bank_transfer",
        "bucket": "available",
        "amount": 100 * n,
        "currency": "CNY",
        "refType": "bank_transfer",
        "refId": f"R{n}",
        "description": "",
        "at": "2025-11-21T08:00:00.000Z",
    }


def balance_wire(movements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "bizCode": "SUCCESS",
        "timestamp": "2025-11-21T08:00:00Z",
        "accountId": ACCOUNT,
        "currency": "CNY",
        "available": 9000,
        "frozen": 1000,
        "pending": 0,
        "total": 10000,
        "asOf": "2025-11-21T08:00:00.123Z",
        "movements": movements,
    }


def client_for(gateway: FakeGateway, **kwargs: Any) -> FundhubClient:
    return FundhubClient(
        BASE, KEY_ID, SECRET, transport=httpx.MockTransport(gateway), backoff_s=0, **kwargs
    )


PAYOUT_ARGS: dict[str, Any] = {
    "supplier_id": "SUP10001",
    "payer_account_id": ACCOUNT,
    "amount": 1000,
    "currency": "CNY",
    "payee": PAYEE,
}


def pay(api: FundhubClient, **overrides: Any) -> Payout:
    return api.create_payout(**(PAYOUT_ARGS | overrides))


# --- sync client ---------------------------------------------------------------------------


def test_create_payout_sends_a_signed_body_and_returns_the_payout() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api:
        payout = pay(api, purpose="invoice 42", extension={"invoice": "INV-42"})
    assert payout.biz_code == "PROCESSING" and not payout.is_final
    assert payout.pay_id == "PAY202511210000000001"
    assert payout.amount == 1000 and payout.currency == "CNY"
    assert payout.extension == {"invoice": "INV-42"}
    assert payout.request_id is not None and REQUEST_ID.match(payout.request_id)
    (request,) = gateway.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Correlation-Id"] == payout.request_id
    assert json.loads(request.content) == {
        "requestId": payout.request_id,
        "supplierId": "SUP10001",
        "payerAccountId": ACCOUNT,
        "amount": 1000,
        "currency": "CNY",
        "payee": {
            "accountName": "Acme Supplies Ltd",
            "accountNo": "6217000010001234567",
            "bankName": "Industrial and Commercial Bank",
        },
        "purpose": "invoice 42",
        "extension": {"invoice": "INV-42"},
    }


def test_generated_request_ids_differ() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api:
        first, second = pay(api), pay(api)
    assert first.request_id != second.request_id
    assert first.pay_id != second.pay_id


def test_retry_after_dropped_connection_keeps_request_id_and_yields_one_payout() -> None:
    gateway = FakeGateway(faults=[drop_after_processing, unavailable])
    with client_for(gateway) as api:
        payout = pay(api, request_id="order-7781:payout")
    assert payout.request_id == "order-7781:payout"
    assert len(gateway.requests) == 3
    assert len(gateway.payouts) == 1
    assert {r.content for r in gateway.requests} == {gateway.requests[0].content}
    assert len({r.headers["X-Nonce"] for r in gateway.requests}) == 3
    assert payout.pay_id == gateway.payouts["order-7781:payout"]["payId"]


def test_server_errors_are_retried_three_times_then_raised_with_the_request_id() -> None:
    gateway = FakeGateway(faults=[unavailable] * 10)
    with client_for(gateway) as api, pytest.raises(ServerError) as caught:
        pay(api)
    assert len(gateway.requests) == 4
    assert caught.value.status == 503 and caught.value.error_code == "E013_UNAVAILABLE"
    rid = json.loads(gateway.requests[0].content)["requestId"]
    assert caught.value.request_id == rid
    assert {json.loads(r.content)["requestId"] for r in gateway.requests} == {rid}


def test_network_errors_exhaust_into_network_error() -> None:
    gateway = FakeGateway(faults=[refuse_connection] * 10)
    with client_for(gateway, retries=1) as api, pytest.raises(NetworkError) as caught:
        pay(api, request_id="r-1")
    assert len(gateway.requests) == 2
    assert caught.value.request_id == "r-1"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_timeouts_are_retried() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    gateway = FakeGateway(faults=[slow])
    with client_for(gateway) as api:
        assert api.get_payout(pay(api).pay_id).pay_id == "PAY202511210000000001"
    assert len(gateway.requests) == 3


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "E001", InvalidRequest),
        (401, "E005_TIMESTAMP_SKEW", Unauthorized),
        (403, "E008_ACCOUNT_FORBIDDEN", Forbidden),
        (404, "E009_NOT_FOUND", NotFound),
        (409, "E010_IDEMPOTENCY_CONFLICT", Conflict),
        (422, "E004_INSUFFICIENT_FUNDS", FundhubError),
    ],
)
def test_refusals_are_not_retried(status: int, code: str, cls: type[FundhubError]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return signed(status, refusal(status, code, "amount: must be a positive integer"))

    gateway = FakeGateway(faults=[refuse] * 5)
    with client_for(gateway) as api, pytest.raises(cls) as caught:
        pay(api, request_id="r-2")
    assert type(caught.value) is cls
    assert len(gateway.requests) == 1
    error = caught.value
    assert (error.status, error.error_code, error.verified) == (status, code, True)
    assert error.msg == "amount: must be a positive integer"
    assert error.body["errorCode"] == code
    assert error.request_id == "r-2"


def test_refusal_signed_with_another_secret_is_a_mismatch() -> None:
    gateway = FakeGateway()
    api = FundhubClient(BASE, KEY_ID, "wrong-secret", transport=httpx.MockTransport(gateway))
    with api, pytest.raises(SignatureMismatch):
        # The fake signs its 401 with the real secret, which this client does not hold.
        api.balance(ACCOUNT)


@pytest.mark.parametrize(
    "forge",
    [
        lambda r: httpx.Response(200, json=balance_wire([])),
        lambda r: signed(200, balance_wire([]), secret="someone-else"),
        lambda r: httpx.Response(
            200,
            content=b'{"available": 999999999}',
            headers={"X-Signature": server.body_signature(SECRET, b'{"available": 1}')},
        ),
        lambda r: signed(503, refusal(503, "E013_UNAVAILABLE", "x"), secret="someone-else"),
    ],
    ids=["unsigned", "other-key", "tampered-body", "forged-5xx"],
)
def test_unverifiable_answers_raise_signature_mismatch_and_are_not_retried(forge: Fault) -> None:
    gateway = FakeGateway(faults=[forge] * 5)
    with client_for(gateway) as api, pytest.raises(SignatureMismatch):
        api.balance(ACCOUNT)
    assert len(gateway.requests) == 1


def test_unsigned_refusal_is_reported_as_unverified() -> None:
    def unknown_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json=refusal(401, "E002", "unknown API key"))

    def proxy_down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    gateway = FakeGateway(faults=[unknown_key])
    with client_for(gateway) as api, pytest.raises(Unauthorized) as caught:
        api.balance(ACCOUNT)
    assert caught.value.verified is False and caught.value.error_code == "E002"

    gateway = FakeGateway(faults=[proxy_down] * 2)
    with client_for(gateway) as api:
        assert api.balance(ACCOUNT).available == 9000
    assert len(gateway.requests) == 3


def test_find_payout_by_request_id() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api:
        created = pay(api, request_id="inv 42/1")
        found = api.find_payout("inv 42/1")
        assert api.find_payout("never-sent") is None
    assert found == created
    assert gateway.requests[1].url.raw_path == b"/v1/payouts?requestId=inv%2042%2F1"


def test_find_payout_raises_on_a_not_found_that_is_not_the_gateways() -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found")

    gateway = FakeGateway(faults=[lost])
    with client_for(gateway) as api, pytest.raises(NotFound) as caught:
        api.find_payout("r-3")
    assert caught.value.verified is False


def test_get_payout_reports_a_final_failure() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api:
        payout = pay(api, currency="RMB")
        gateway.payouts[payout.request_id or ""] |= {
            "bizCode": "FAILED",
            "errorCode": "E014_RETURNED",
            "msg": "returned by the bank",
            "extension": {"bankTxnId": "B123"},
        }
        final = api.get_payout(payout.pay_id)
    assert payout.currency == "CNY"
    assert final.is_final and final.biz_code == "FAILED"
    assert (final.error_code, final.msg) == ("E014_RETURNED", "returned by the bank")
    assert final.extension == {"bankTxnId": "B123"}


def test_answer_for_another_request_id_is_refused() -> None:
    def mixed_up(request: httpx.Request) -> httpx.Response:
        return signed(
            202,
            {
                "bizCode": "PROCESSING",
                "payId": "PAY1",
                "requestId": "someone-elses",
                "supplierId": "SUP10001",
                "amount": 1000,
                "timestamp": "2025-11-21T08:00:00Z",
            },
        )

    gateway = FakeGateway(faults=[mixed_up])
    with client_for(gateway) as api, pytest.raises(UnexpectedPayload):
        pay(api, request_id="mine")


@pytest.mark.parametrize(
    "payload", [[1, 2], {"payId": "PAY1"}, {**balance_wire([]), "amount": 1.5}]
)
def test_malformed_answers_raise_unexpected_payload(payload: Any) -> None:
    gateway = FakeGateway(faults=[lambda r: signed(200, payload)])
    with client_for(gateway) as api, pytest.raises(UnexpectedPayload):
        api.get_payout("PAY1")


@pytest.mark.parametrize("amount", [10.0, True, "1000", None])
def test_non_integer_amounts_are_refused_before_sending(amount: Any) -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api, pytest.raises(TypeError):
        pay(api, amount=amount)
    assert gateway.requests == []


def test_balance_and_transactions() -> None:
    gateway = FakeGateway(movements=[movement_wire(n) for n in range(1, 6)])
    with client_for(gateway) as api:
        balance = api.balance(ACCOUNT)
        page = api.transactions(ACCOUNT, limit=2)
        following = api.transactions(ACCOUNT, cursor=page.next_cursor, limit=2)
        everything = list(api.iter_transactions(ACCOUNT, limit=2))
    assert isinstance(balance, Balance)
    assert (balance.available, balance.frozen, balance.pending, balance.total) == (
        9000,
        1000,
        0,
        10000,
    )
    assert [m.amount for m in balance.movements] == [100, 200, 300, 400, 500]
    assert [m.ref_id for m in page.items] == ["R1", "R2"] and page.next_cursor == "2"
    assert [m.ref_id for m in following.items] == ["R3", "R4"]
    assert [m.movement_id for m in everything] == [999, 998, 997, 996, 995]
    assert (
        gateway.requests[1].url.raw_path == f"/v1/accounts/{ACCOUNT}/transactions?limit=2".encode()
    )


def test_argument_checks() -> None:
    gateway = FakeGateway()
    with client_for(gateway) as api:
        with pytest.raises(ValueError):
            api.transactions(ACCOUNT, limit=0)
        with pytest.raises(ValueError):
            api.get_payout("")
        with pytest.raises(RuntimeError):
            api.verify_callback("1", "x", b"{}")
    with pytest.raises(ValueError):
        FundhubClient("ftp://gateway.test", KEY_ID, SECRET)
    with pytest.raises(ValueError):
        FundhubClient(BASE, KEY_ID, "")
    assert gateway.requests == []


def test_backoff_grows_with_jitter() -> None:
    for attempt in range(4):
        delay = backoff_delay(0.25, attempt)
        assert 0.125 * 2**attempt <= delay <= 0.25 * 2**attempt


# --- async client --------------------------------------------------------------------------


def async_client_for(gateway: FakeGateway, **kwargs: Any) -> AsyncFundhubClient:
    return AsyncFundhubClient(
        BASE, KEY_ID, SECRET, transport=httpx.MockTransport(gateway), backoff_s=0, **kwargs
    )


async def pay_async(api: AsyncFundhubClient, **overrides: Any) -> Payout:
    return await api.create_payout(**(PAYOUT_ARGS | overrides))


async def test_async_retry_after_dropped_connection_yields_one_payout() -> None:
    gateway = FakeGateway(faults=[drop_after_processing, unavailable, refuse_connection])
    async with async_client_for(gateway) as api:
        payout = await pay_async(api)
        assert await api.find_payout(payout.request_id or "") == payout
        assert await api.get_payout(payout.pay_id) == payout
    assert len(gateway.payouts) == 1
    posts = [r for r in gateway.requests if r.method == "POST"]
    assert len(posts) == 4 and len({r.content for r in posts}) == 1


async def test_async_refusals_and_forgeries() -> None:
    gateway = FakeGateway(
        faults=[lambda r: signed(409, refusal(409, "E010_IDEMPOTENCY_CONFLICT", "x"))]
    )
    async with async_client_for(gateway) as api:
        with pytest.raises(Conflict) as caught:
            await pay_async(api, supplier_id="S", amount=1, request_id="r-9")
        assert caught.value.request_id == "r-9"
        gateway.faults.append(lambda r: httpx.Response(200, json=balance_wire([])))
        with pytest.raises(SignatureMismatch):
            await api.balance(ACCOUNT)
        assert await api.find_payout("unknown") is None
    assert len(gateway.requests) == 3


async def test_async_server_errors_exhaust() -> None:
    gateway = FakeGateway(faults=[unavailable] * 10)
    async with async_client_for(gateway, retries=2) as api:
        with pytest.raises(ServerError):
            await api.balance(ACCOUNT)
    assert len(gateway.requests) == 3


async def test_async_pages() -> None:
    gateway = FakeGateway(movements=[movement_wire(n) for n in range(1, 8)])
    async with async_client_for(gateway) as api:
        seen = [m.ref_id async for m in api.iter_transactions(ACCOUNT, limit=3)]
        balance = await api.balance(ACCOUNT)
    assert seen == [f"R{n}" for n in range(1, 8)]
    assert balance.total == 10000
