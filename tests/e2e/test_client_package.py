"""The Python client package (fundhub.client) against the running gateway.

Signed calls, verified answers, and the retry that matters most: the gateway committed the
payout but its answer never arrived; the client sends the same requestId again and there is
still one payout.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from e2e.conftest import Stack
from fundhub.client import (
    PROCESSING,
    AsyncFundhubClient,
    Conflict,
    Forbidden,
    InvalidRequest,
    Payee,
    Payout,
    SignatureMismatch,
    new_request_id,
)

ACCOUNT = "6222000666001"
PAYEE = Payee("Acme Ltd", "6217000010001234567", "ICBC")


class DropFirstPayoutAnswer(httpx.AsyncBaseTransport):
    """Delivers each request; loses the answer to the first POST /v1/payouts (after the server
    handled it), as a connection reset right after the request was sent would."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Request] = []
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/payouts" and not self.dropped:
            await response.aread()
            await response.aclose()
            self.dropped += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class TamperAnswers(httpx.AsyncBaseTransport):
    """A man in the middle that changes the amount in every answer."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = (await response.aread()).replace(b'"amount":', b'"amount":9')
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def create(api: AsyncFundhubClient, **fields: Any) -> Payout:
    """create_payout from ACCOUNT to PAYEE in CNY, but for what ``fields`` give."""
    defaults: dict[str, Any] = {"payer_account_id": ACCOUNT, "currency": "CNY", "payee": PAYEE}
    return await api.create_payout(**(defaults | fields))


@pytest.fixture(scope="module")
def key(stack: Stack) -> tuple[str, str]:
    return stack.env.create_api_key("payouts:write,payouts:read", ACCOUNT)


async def test_create_get_and_find_with_verified_answers(
    stack: Stack, key: tuple[str, str]
) -> None:
    async with AsyncFundhubClient(stack.gateway.url, *key) as api:
        rid = new_request_id()
        created = await create(
            api,
            request_id=rid,
            supplier_id="SUP10001",
            amount=1234,
            currency="RMB",
            extension={"invoice": "INV-7"},
        )
        assert created.biz_code == PROCESSING and not created.is_final
        assert (created.request_id, created.amount, created.currency) == (rid, 1234, "CNY")
        assert created.extension == {"invoice": "INV-7"}
        assert await api.get_payout(created.pay_id) == created
        assert await api.find_payout(rid) == created
        assert await api.find_payout(new_request_id()) is None

        with pytest.raises(Conflict) as conflict:
            await create(api, request_id=rid, supplier_id="SUP10001", amount=1235)
        assert conflict.value.error_code == "E010_IDEMPOTENCY_CONFLICT"
        assert conflict.value.verified and conflict.value.request_id == rid
        with pytest.raises(InvalidRequest, match=r"payee\.accountNo"):
            await create(
                api,
                supplier_id="SUP10001",
                amount=1,
                payee=Payee("Acme Ltd", "not a number", "ICBC"),
            )
        with pytest.raises(Forbidden):
            await create(api, supplier_id="SUP10001", amount=1, payer_account_id="6222000666999")


async def test_a_lost_answer_is_retried_into_the_same_payout(
    stack: Stack, key: tuple[str, str]
) -> None:
    transport = DropFirstPayoutAnswer()
    rid = new_request_id()
    async with AsyncFundhubClient(
        stack.gateway.url, *key, transport=transport, backoff_s=0.01
    ) as api:
        payout = await create(api, request_id=rid, supplier_id="SUP10002", amount=500)
    assert transport.dropped == 1
    posts = [r for r in transport.sent if r.method == "POST"]
    assert len(posts) == 2 and posts[0].content == posts[1].content
    assert posts[0].headers["X-Nonce"] != posts[1].headers["X-Nonce"]
    rows = await stack.env.pool.fetch(
        "SELECT pay_id FROM payouts WHERE key_id = $1 AND request_id = $2", key[0], rid
    )
    assert [r["pay_id"] for r in rows] == [payout.pay_id]


async def test_a_tampered_answer_is_not_believed(stack: Stack, key: tuple[str, str]) -> None:
    async with AsyncFundhubClient(stack.gateway.url, *key, transport=TamperAnswers()) as api:
        with pytest.raises(SignatureMismatch):
            await create(api, supplier_id="SUP10003", amount=700)
