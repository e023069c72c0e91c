"""The refusals of the depository platform's acceptance, each through the whole running platform
(every part a real process, merchants and orders made through the API and the simulators): its
code, and no change anywhere — every table's content (but the request's own nonce, rate-limit
count and audit entry) and every topic (but the audit's) exactly as before.

The channel notifications are forged about real orders awaiting payment (a refused "paid"
notice for an order that exists must not pay it), signed with the simulator's own keys; the
same builder unchanged is accepted (the last test), so each refusal is for its one change.
Where a refusal's code was tested before (tests/e2e/test_channel_notifications.py,
test_orders_flow.py, test_settlement_flow.py), this adds what those could not see: the whole
database and every topic untouched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict
from support.env import ModuleEnv
from support.forged_notices import Forged, Forger
from support.onboarding import Onboarded, register, verify_accounts, wait_active, wait_rows
from support.order_world import order_json
from support.platform import Answer, Platform, depository_platform
from support.snapshot import snapshot

UNVERIFIED = {"code": "FAIL", "message": "signature verification failed"}


@dataclass
class World:
    platform: Platform
    forger: Forger
    a: Onboarded  # ACTIVE, account verified, money available
    b: Onboarded  # ACTIVE, account verified
    unverified: Onboarded  # ACTIVE, money available, no settlement account
    rejected: Onboarded  # REJECTED by the depository
    refunded: dict[str, Any]  # an order of 1,000 with 600 refunded
    awaiting: dict[str, dict[str, Any]]  # channel -> an order awaiting payment


async def created(platform: Platform, body: dict[str, Any]) -> dict[str, Any]:
    answer = await platform.call("POST", "/v1/orders", body)
    assert answer.status == 200 and answer.body["state"] == "AWAITING_PAYMENT", answer.body
    order: dict[str, Any] = answer.body
    return order


async def paid(platform: Platform, body: dict[str, Any]) -> dict[str, Any]:
    order = await created(platform, body)
    await platform.sim(
        platform.channels, "POST", f"/sim/{order['channel'].lower()}/pay/{order['orderId']}"
    )
    await wait_rows(
        platform,
        "SELECT count(*) FROM orders WHERE order_id = ANY($1) AND state = 'PAID'",
        [order["orderId"]],
    )
    return order


async def quiet(platform: Platform) -> None:
    """Nothing under way that would move a row while a refusal is watched."""
    await wait_rows(
        platform,
        "SELECT CASE WHEN"
        " (SELECT count(*) FROM order_refunds WHERE state = 'PROCESSING')"
        " + (SELECT count(*) FROM settlements WHERE finished_at IS NULL)"
        " + (SELECT count(*) FROM merchant_requests WHERE state <> 'DONE')"
        " + (SELECT count(*) FROM callback_deliveries WHERE status <> 'DELIVERED')"
        " + (SELECT count(*) FROM outbox WHERE published_at IS NULL) = 0"
        " THEN cardinality($1::text[]) ELSE 0 END",
        ["quiet"],
    )


@pytest.fixture(scope="module")
async def world(env: ModuleEnv) -> AsyncIterator[World]:
    async with depository_platform(env) as platform:
        active = await register(platform, 3)
        (rejected,) = await register(platform, 1, "R", name="REJECT on purpose")
        await wait_active(platform, active)
        await wait_rows(
            platform,
            "SELECT count(*) FROM merchants WHERE merchant_id = ANY($1) AND state = 'REJECTED'",
            [rejected.merchant_id],
        )
        a, b = await verify_accounts(platform, active[:2])
        unverified = active[2]
        run = uuid.uuid4().hex[:6]
        settled = await paid(
            platform,
            order_json(f"RS-{run}-settled", [(a, 6_000), (b, 3_000), (unverified, 500)], 500),
        )
        answer = await platform.call("POST", f"/v1/orders/{settled['orderNo']}/settle")
        assert answer.status == 202, answer.body
        await wait_rows(
            platform,
            "SELECT count(*) FROM orders WHERE order_id = ANY($1) AND settled_at IS NOT NULL",
            [settled["orderId"]],
        )
        refunded = await paid(
            platform, order_json(f"RS-{run}-refunded", [(a, 700), (b, 200)], 100, "ALIPAY")
        )
        answer = await platform.call(
            "POST",
            f"/v1/orders/{refunded['orderNo']}/refunds",
            {"refundNo": "RF-1", "amount": 600},
        )
        assert answer.status == 202, answer.body
        await wait_rows(
            platform,
            "SELECT count(*) FROM order_refunds WHERE refund_id = ANY($1) AND state = 'SUCCESS'",
            [answer.body["refundId"]],
        )
        awaiting = {
            channel: await created(
                platform, order_json(f"RS-{run}-{channel}", [(a, 1_000), (b, 500)], 88, channel)
            )
            for channel in ("WECHATPAY", "ALIPAY")
        }
        await quiet(platform)
        yield World(
            platform,
            Forger.of(platform.keys_dir, platform.merchant_keys),
            a,
            b,
            unverified,
            rejected,
            refunded,
            awaiting,
        )


Request = Callable[[World], Awaitable[Answer]]


def api(method: str, path: Callable[[World], str], body: Callable[[World], Any]) -> Request:
    async def send(world: World) -> Answer:
        return await world.platform.call(method, path(world), body(world))

    return send


def notice(channel: str, forge: Callable[[Forger, str, int], Forged]) -> Request:
    """A forged notice about the order awaiting payment through ``channel``."""

    async def send(world: World) -> Answer:
        order = world.awaiting[channel]
        headers, body = forge(world.forger, order["orderId"], order["amount"])
        platform = world.platform
        url = f"{platform.gateway.url}/callbacks/{channel.lower()}"
        async with platform.http.post(url, data=body, headers=headers) as response:
            text = await response.text()
            parsed: Any = text
            if response.content_type == "application/json":
                parsed = await response.json()
            return Answer(response.status, parsed, CIMultiDict(response.headers))

    return send


async def _available(world: World, who: Onboarded) -> int:
    answer = await world.platform.call("GET", f"/v1/accounts/{who.account_id}/balance")
    assert answer.status == 200, answer.body
    available: int = answer.body["available"]
    return available


async def _beyond_available(world: World) -> Answer:
    available = await _available(world, world.a)
    assert available > 0
    path = f"/v1/merchants/{world.a.merchant_id}/withdrawals"
    return await world.platform.call(
        "POST", path, {"requestId": "wd-beyond", "amount": available + 1}
    )


async def _unverified(world: World) -> Answer:
    assert await _available(world, world.unverified) > 0  # it is the account that is missing
    path = f"/v1/merchants/{world.unverified.merchant_id}/withdrawals"
    return await world.platform.call("POST", path, {"requestId": "wd-nocard", "amount": 1})


# case -> (request, HTTP status, the refusal: an errorCode, or the channel's exact answer)
CASES: dict[str, tuple[Request, int, Any]] = {
    "splits that do not add up": (
        api(
            "POST",
            lambda w: "/v1/orders",
            lambda w: {**order_json("RS-sum", [(w.a, 600), (w.b, 300)], 99), "amount": 1_000},
        ),
        400,
        "E031_SPLIT_MISMATCH",
    ),
    "an inactive (rejected) merchant": (
        api(
            "POST",
            lambda w: "/v1/orders",
            lambda w: order_json("RS-inactive", [(w.a, 600), (w.rejected, 300)], 100),
        ),
        422,
        "E032_MERCHANT_NOT_ACTIVE",
    ),
    "a refund beyond what is left": (
        api(
            "POST",
            lambda w: f"/v1/orders/{w.refunded['orderNo']}/refunds",
            lambda w: {"refundNo": "RF-2", "amount": 401},
        ),
        422,
        "E033_REFUND_EXCEEDS_PAID",
    ),
    "a withdrawal without a verified account": (_unverified, 409, "E042_NO_VERIFIED_ACCOUNT"),
    "a withdrawal beyond available": (_beyond_available, 422, "E004_INSUFFICIENT_FUNDS"),
    "WeChat Pay: tampered body": (
        notice("WECHATPAY", Forger.wechatpay_tampered),
        401,
        UNVERIFIED,
    ),
    "WeChat Pay: tampered signature": (
        notice("WECHATPAY", Forger.wechatpay_bad_signature),
        401,
        UNVERIFIED,
    ),
    "WeChat Pay: unknown serial": (
        notice("WECHATPAY", Forger.wechatpay_unknown_serial),
        401,
        UNVERIFIED,
    ),
    "WeChat Pay: wrong APIv3 key (the tag fails)": (
        notice("WECHATPAY", lambda f, o, t: f.wechatpay_paid(o, t, apiv3_key=b"W" * 32)),
        401,
        UNVERIFIED,
    ),
    "WeChat Pay: timestamp 6 minutes old": (
        notice("WECHATPAY", Forger.wechatpay_old),
        401,
        UNVERIFIED,
    ),
    "WeChat Pay: another app's notification": (
        notice("WECHATPAY", lambda f, o, t: f.wechatpay_paid(o, t, mchid="1999999999")),
        401,
        UNVERIFIED,
    ),
    "Alipay: tampered parameter": (notice("ALIPAY", Forger.alipay_tampered), 401, "fail"),
    "Alipay: another app's notification": (notice("ALIPAY", Forger.alipay_other_app), 401, "fail"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refusal_answers_its_code_and_changes_nothing_anywhere(
    world: World, case: str
) -> None:
    send, status, refusal = CASES[case]
    before = await snapshot(world.platform.env)
    answer = await send(world)
    assert answer.status == status, (case, answer.body)
    if isinstance(refusal, str) and refusal.startswith("E"):
        assert answer.code == refusal, answer.body
        assert answer.headers.get("X-Signature"), "a refusal to a known key is signed"
    else:
        assert answer.body == refusal, answer.body
    await asyncio.sleep(0.5)  # anything it set going would have moved by now
    after = await snapshot(world.platform.env)
    assert before.changes(after) == [], case


async def test_the_same_forger_unchanged_is_accepted_and_pays_the_order(world: World) -> None:
    """For contrast: the builder behind the notices above, with nothing changed, pays."""
    for channel, forge in (("WECHATPAY", Forger.wechatpay_paid), ("ALIPAY", Forger.alipay_paid)):
        answer = await notice(channel, forge)(world)
        assert answer.status in (200, 204), answer.body
        await wait_rows(
            world.platform,
            "SELECT count(*) FROM orders WHERE order_id = ANY($1) AND state = 'PAID'",
            [world.awaiting[channel]["orderId"]],
        )
