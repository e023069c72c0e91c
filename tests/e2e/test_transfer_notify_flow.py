"""Bank transfer notifications end to end: signed POST -> Kafka -> notify-ingest -> ledger."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from pathlib import Path

import httpx
from support.api import signed_get
from support.ledger import assert_ledger_invariants, balances
from support.processes import ops_url
from support.settlement_world import merchant
from support.transfers import assert_credited_once, random_credits, records_with_prefix

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import (
    TransferSpec,
    build_many,
    build_notification,
    resign,
)

SEED_EXAMPLE = Path(__file__).parents[1] / "fixtures" / "seed_transfer_notify.json"
SEED_ACCOUNT = "15489516846"


async def record_state(stack: Stack, record_id: str) -> str | None:
    state: str | None = await stack.env.pool.fetchval(
        "SELECT state FROM bank_transfer_records WHERE app_id = $1 AND record_id = $2",
        stack.env.app_id,
        record_id,
    )
    return state


async def test_seed_example_resigned_is_accepted_and_frozen(stack: Stack) -> None:
    params = resign(json.loads(SEED_EXAMPLE.read_text()), stack.env.bank.private_pem)
    params["app_id"] = stack.env.app_id
    params = resign(params, stack.env.bank.private_pem)
    response = await stack.post(params)
    assert response.status_code == 200 and response.text == "success", response.text

    async def frozen() -> bool:
        return (await balances(stack.env.pool)).get(SEED_ACCOUNT) == (0, 100000)

    await wait_until(frozen, timeout_s=10)
    key_id, secret = stack.env.create_api_key("balance:read", SEED_ACCOUNT)
    answer = await signed_get(stack.http, key_id, secret, f"/v1/accounts/{SEED_ACCOUNT}/balance")
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["bizCode"] == "SUCCESS" and body["statusCode"] == 200
    assert (body["available"], body["frozen"], body["pending"], body["total"]) == (
        0,
        100000,
        0,
        100000,
    )
    assert body["currency"] == "CNY" and body["accountId"] == SEED_ACCOUNT
    kinds = [(m["bucket"], m["amount"]) for m in body["movements"]]
    assert sorted(kinds) == sorted(
        [("available", 100000), ("available", -100000), ("frozen", 100000)]
    )
    stored = await stack.env.pool.fetchrow(
        "SELECT fee, post_fee, store_list, out_acct_no, host_tx_date::text AS d, state "
        "FROM bank_transfer_records WHERE record_id = '1234'"
    )
    assert stored is not None
    assert (stored["fee"], stored["post_fee"], stored["out_acct_no"]) == (
        100,
        100,
        "624615616476846548",
    )
    assert stored["store_list"][1] == {"store_id": "S0002", "store_name": "门店0002"}
    assert (stored["d"], stored["state"]) == ("2025-06-01", "FROZEN")


async def test_the_seed_text_as_written_is_refused(stack: Stack) -> None:
    """The seed's biz_content has one '}' too many; verbatim, it is not JSON and is refused."""
    params = json.loads(SEED_EXAMPLE.read_text())
    params["biz_content"] += "}"
    params["app_id"] = stack.env.app_id
    response = await stack.post(resign(params, stack.env.bank.private_pem))
    assert response.text.startswith("fail") and "biz_content" in response.text


async def test_duplicated_shuffled_concurrent_notifications_post_once(stack: Stack) -> None:
    rng = random.Random(2)
    accounts = [f"62220{i:06d}" for i in range(20)]
    specs, expected = random_credits(rng, "dup-", 200, accounts, 10**7)
    notifications = build_many(specs, stack.env.app_id, stack.env.bank.private_pem)
    deliveries = [dict(n) for n in notifications for _ in range(3)]
    for copy in deliveries[::2]:  # the bank's retries carry a new timestamp and signature
        copy.update(resign(copy, stack.env.bank.private_pem))
    rng.shuffle(deliveries)
    report = await stack.bank.send_all(deliveries, concurrency=60)
    assert report.failed == 0, report

    async def all_recorded() -> bool:
        return await records_with_prefix(stack.env.pool, "dup-") == 200

    await wait_until(all_recorded, timeout_s=30)
    await asyncio.sleep(0.5)  # let any (wrong) second posting land before looking
    await assert_credited_once(stack.env.pool, "dup-", 200, expected)


async def test_states_out_of_order_reach_the_furthest_once(stack: Stack) -> None:
    key = stack.env.bank.private_pem
    app = stack.env.app_id
    a = dict(record_id="ooo-a", in_acct_no="6222000999001", trans_amount=5000)
    b = dict(record_id="ooo-b", in_acct_no="6222000999002", trans_amount=7000)
    # a: deducted (1) arrives before processing (6), then the arrival (0) last.
    for status in ("1", "6", "0"):
        notice = build_notification(TransferSpec(**a, deduct_status=status), app, key)  # type: ignore[arg-type]
        assert (await stack.post(notice)).text == "success"
    # b: the reversal before a duplicate of its arrival.
    arrival = build_notification(TransferSpec(**b), app, key)  # type: ignore[arg-type]
    reversal = build_notification(TransferSpec(**b, reverse_flag="1"), app, key)  # type: ignore[arg-type]
    for notice in (reversal, arrival, resign(arrival, key)):
        assert (await stack.post(notice)).text == "success"

    async def settled() -> bool:
        n = await stack.env.pool.fetchval(
            "SELECT count(*) FROM bank_notifications WHERE record_id IN ('ooo-a', 'ooo-b')"
        )
        return bool(n == 5)  # the resigned duplicate is the same message: deduplicated upstream

    await wait_until(settled, timeout_s=10)
    assert await record_state(stack, "ooo-a") == "DEDUCTED"
    assert await record_state(stack, "ooo-b") == "REVERSED"
    found = await balances(stack.env.pool)
    assert found["6222000999001"] == (0, 0)
    assert found["6222000999002"] == (0, 0)
    per_record = dict(
        await stack.env.pool.fetch(
            "SELECT ref_id, count(*) FROM journal_entries WHERE ref_id IN ('ooo-a', 'ooo-b') GROUP BY ref_id"
        )
    )
    assert per_record == {"ooo-a": 1, "ooo-b": 1}, per_record
    clearing = await stack.env.pool.fetchval(
        "SELECT sum(p.amount) FROM postings p JOIN journal_entries j USING (entry_id) "
        "WHERE j.ref_id = 'ooo-a' AND p.account_id = 'sys:deduction-clearing:CNY'"
    )
    assert clearing == 5000
    await assert_ledger_invariants(stack.env.pool)


async def test_credit_is_visible_in_the_balance_within_one_second(stack: Stack) -> None:
    account = "6222000777001"
    key_id, secret = stack.env.create_api_key("balance:read", account)
    notice = build_notification(
        TransferSpec(record_id="fast-1", in_acct_no=account, trans_amount=4200),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    response = await stack.post(notice)
    answered = time.monotonic()
    assert response.text == "success"

    async def visible() -> bool:
        r = await signed_get(stack.http, key_id, secret, f"/v1/accounts/{account}/balance")
        return r.status_code == 200 and r.json()["available"] == 4200

    await wait_until(visible, timeout_s=5, interval_s=0.02)
    assert time.monotonic() - answered < 1.0


async def test_transactions_page_by_cursor(stack: Stack) -> None:
    account = "6222000777002"
    specs = [
        TransferSpec(record_id=f"page-{i}", in_acct_no=account, trans_amount=100 + i)
        for i in range(7)
    ]
    for notice in build_many(specs, stack.env.app_id, stack.env.bank.private_pem):
        assert (await stack.post(notice)).text == "success"
    key_id, secret = stack.env.create_api_key("balance:read", account)

    async def seven() -> bool:
        return (await balances(stack.env.pool)).get(account, (0, 0))[0] == sum(
            100 + i for i in range(7)
        )

    await wait_until(seven)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        query = [("limit", "3")] + ([("cursor", cursor)] if cursor else [])
        page = await signed_get(
            stack.http, key_id, secret, f"/v1/accounts/{account}/transactions", query
        )
        body = page.json()
        assert page.status_code == 200, body
        seen.extend(item["amount"] for item in body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == [100 + i for i in range(7)]
    bad = await signed_get(
        stack.http, key_id, secret, f"/v1/accounts/{account}/transactions", [("cursor", "zzz")]
    )
    assert bad.status_code == 400 and bad.json()["errorCode"] == "E001"
    # Past a bigint (the posting ids' type): once an unsigned E500 with a traceback.
    beyond = base64.urlsafe_b64encode(f"p:{2**63}".encode()).decode().rstrip("=")
    for cursor_text in (beyond, base64.urlsafe_b64encode(b"p:-1").decode().rstrip("=")):
        out_of_range = await signed_get(
            stack.http,
            key_id,
            secret,
            f"/v1/accounts/{account}/transactions",
            [("cursor", cursor_text)],
        )
        assert out_of_range.status_code == 400, out_of_range.text
        assert out_of_range.json()["errorCode"] == "E001"
        assert out_of_range.headers.get("X-Signature"), out_of_range.headers


async def test_unhandled_method_is_kept_and_answered_success(stack: Stack) -> None:
    from support.kafka import message_count

    from fundhub.common.topics import topics

    topic = topics(stack.env.settings).bank_notify_unhandled
    before = await message_count(stack.env.settings, topic)
    notice = build_notification(
        TransferSpec(record_id="other-1", in_acct_no="6222000777003", trans_amount=1),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    notice["method"] = "bkfunds.acct.something.notify"
    response = await stack.post(resign(notice, stack.env.bank.private_pem))
    assert response.text == "success"
    assert await message_count(stack.env.settings, topic) == before + 1
    assert await record_state(stack, "other-1") is None


async def test_health_endpoints(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for service in (stack.gateway, stack.ingest):
            assert (await client.get(f"{service.url}/healthz")).status_code == 200
            ready = await client.get(f"{service.url}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {
                "kafka": True,
                "postgres": True,
            }
            # The gateway's metrics are on its operations port, not where callers reach it.
            base = ops_url(service) if service is stack.gateway else service.url
            metrics = await client.get(f"{base}/metrics")
            assert metrics.status_code == 200 and "fundhub_" in metrics.text


async def test_a_transfer_to_a_closed_merchant_is_held_in_suspense_with_an_alert(
    stack: Stack,
) -> None:
    """notify-ingest asks the merchants which accounts are closed: the money goes to the
    suspense, the merchant's account stays empty, and the exception is kept and alerted."""
    closed = await merchant(stack.env.pool, "ak_0000000000000000000e", "Gone Co", state="CLOSED")
    spec = TransferSpec(record_id="e2e-closed-1", in_acct_no=closed.account_id, trans_amount=4321)
    notice = build_notification(spec, stack.env.app_id, stack.env.bank.private_pem)
    assert (await stack.post(notice)).text == "success"

    async def kept() -> bool:
        found = await stack.env.pool.fetchval(
            "SELECT amount FROM bank_transfer_exceptions WHERE record_id = 'e2e-closed-1'"
        )
        return found == 4321

    await wait_until(kept, timeout_s=15)
    assert (await balances(stack.env.pool)).get(closed.account_id, (0, 0)) == (0, 0)
    held = await stack.env.pool.fetchval(
        "SELECT sum(amount) FROM postings WHERE account_id = 'sys:bank-suspense:CNY'"
    )
    assert held == 4321
    alert = 'fundhub_notify_ingest_alerts_total{reason="account-closed"} 1.0'

    async def alerted() -> bool:  # counted once the batch's transaction committed
        async with httpx.AsyncClient(timeout=5) as client:
            return alert in (await client.get(f"{stack.ingest.url}/metrics")).text

    await wait_until(alerted, timeout_s=5)
    await assert_ledger_invariants(stack.env.pool)
