"""A day's statements fetched from the running simulators the way the real sources serve them
(WeChat Pay's signed two-step download with its SHA1, Alipay's gateway query and 30-second URL,
the bank's one-time download with its SHA-256), then read by the parsers: the lines are what
the simulators processed, and injected discrepancies arrive as asked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import httpx
import pytest
from support.channels import MerchantKeys, StaticKeys, serve_on_simulator
from support.env import ModuleEnv
from support.processes import Service, WithArguments, channel_simulator, free_port

from fundhub.channels.alipay_http import AlipayHttp
from fundhub.channels.events import Channel
from fundhub.channels.ports import PaymentOrder, RefundOrder
from fundhub.channels.wechatpay_http import WechatPayHttp
from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.reconciliation.alipay_bill import parse_alipay_bill
from fundhub.reconciliation.alipay_bill_http import fetch_alipay_bill
from fundhub.reconciliation.bank_file import parse_bank_file
from fundhub.reconciliation.bank_file_http import fetch_bank_file
from fundhub.reconciliation.download_http import NOT_READY, StatementUnavailable
from fundhub.reconciliation.statement import LineKind
from fundhub.reconciliation.wechatpay_bill import parse_wechatpay_bill
from fundhub.reconciliation.wechatpay_bill_http import fetch_wechatpay_bill

NOTIFY = "http://127.0.0.1:9/callbacks"  # nobody listens: the notices are not the point here


def today() -> date:
    return utcnow().astimezone(BANK_TZ).date()


@pytest.fixture(scope="module")
async def channel_sim(env: ModuleEnv) -> AsyncIterator[Service]:
    sim = channel_simulator(env, "--refund-delay", "5,10", "--time-factor", "0.001")
    sim.start()
    try:
        await sim.wait_ready()
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
async def bank_sim(env: ModuleEnv) -> AsyncIterator[Service]:
    port = free_port()
    key_file = env.tmp / f"bank-private-{port}.pem"
    key_file.write_text(env.bank.private_pem)
    sim = WithArguments(env, "bank-simulator", "fundhub-bank-simulator", port, [
        "--port", str(port), "--gateway-url", f"http://127.0.0.1:{free_port()}",
        "--app-id", env.app_id, "--private-key-file", str(key_file), "--retries", "0",
        "--timeout", "1",
    ])  # fmt: skip
    sim.start()
    try:
        await sim.wait_ready()
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
async def keys(channel_sim: Service) -> StaticKeys:
    merchant = MerchantKeys()
    async with httpx.AsyncClient(timeout=10) as http:
        published = await serve_on_simulator(http, channel_sim.url, merchant)
    return StaticKeys(merchant, published)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def release(url: str, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.put(url, json=body)


async def pay_and_refund(
    session: aiohttp.ClientSession, sim: Service, keys: StaticKeys, channel: Channel
) -> tuple[str, str]:
    """Two payments (1.00 and 0.29 yuan), a refund of 0.25 of the first; their numbers."""
    http = (
        WechatPayHttp(session, sim.url, keys)
        if channel is Channel.WECHATPAY
        else AlipayHttp(session, f"{sim.url}/gateway.do", keys)
    )
    app_id = (
        keys.wechatpay_keys.app.app_id
        if channel is Channel.WECHATPAY
        else keys.alipay_keys.app.app_id
    )
    first, second = f"O{uuid.uuid4().hex[:20]}", f"O{uuid.uuid4().hex[:20]}"
    async with httpx.AsyncClient(timeout=10) as client:
        for number, amount in ((first, 100), (second, 29)):
            await http.create_payment(
                PaymentOrder(channel, app_id, number, amount, "CNY", "商品", f"{NOTIFY}/x")
            )
            paid = await client.post(f"{sim.url}/sim/{channel.value.lower()}/pay/{number}")
            assert paid.status_code == 200, paid.text
    refund_no = f"R{uuid.uuid4().hex[:20]}"
    await http.refund(
        RefundOrder(channel, app_id, first, refund_no, 25, 100, "退货", f"{NOTIFY}/r")
    )
    await asyncio.sleep(0.3)  # WeChat Pay settles a refund a little later
    return first, refund_no


async def test_wechatpay_bill_fetched_verified_and_read(
    session: aiohttp.ClientSession, channel_sim: Service, keys: StaticKeys
) -> None:
    wechat = keys.wechatpay_keys
    with pytest.raises(StatementUnavailable) as early:
        await fetch_wechatpay_bill(session, channel_sim.url, wechat, today())
    assert early.value.code == NOT_READY  # a day's bill comes the day after

    paid, refund_no = await pay_and_refund(session, channel_sim, keys, Channel.WECHATPAY)
    answer = await release(f"{channel_sim.url}/sim/bills/wechatpay/{today()}", {})
    assert answer.status_code == 200, answer.text

    content = await fetch_wechatpay_bill(session, channel_sim.url, wechat, today())
    statement = parse_wechatpay_bill(content, today())
    mine = {(line.kind, line.reference): line for line in statement.lines}
    payment, refund = mine[(LineKind.PAYMENT, paid)], mine[(LineKind.REFUND, refund_no)]
    assert (payment.amount_fen, payment.fee_fen, payment.status) == (100, 1, "SUCCESS")
    assert (refund.amount_fen, refund.fee_fen, refund.status) == (25, 0, "SUCCESS")
    assert len(statement.lines) == 3

    plain = await fetch_wechatpay_bill(session, channel_sim.url, wechat, today(), gzip=False)
    assert plain == content  # issued once: the same bill, whichever way it travels

    injected = [
        {"kind": "amount", "reference": paid, "amountFen": 101},
        {"kind": "status", "reference": refund_no, "status": "PROCESSING"},
        {"kind": "add", "reference": "NOT-OURS-1", "amountFen": 500},
        {"kind": "duplicate", "reference": paid},
        {"kind": "fee", "reference": refund_no, "feeFen": 7},
    ]
    answer = await release(
        f"{channel_sim.url}/sim/bills/wechatpay/{today()}", {"discrepancies": injected}
    )
    assert answer.status_code == 200, answer.text
    corrected = parse_wechatpay_bill(
        await fetch_wechatpay_bill(session, channel_sim.url, wechat, today()), today()
    )
    lines = [
        (line.reference, line.amount_fen, line.fee_fen, line.status) for line in corrected.lines
    ]
    assert lines.count((paid, 101, 1, "SUCCESS")) == 2
    assert (refund_no, 25, 7, "PROCESSING") in lines
    assert ("NOT-OURS-1", 500, 3, "SUCCESS") in lines
    assert len(lines) == 5


async def test_a_discrepancy_naming_no_line_is_refused(channel_sim: Service) -> None:
    answer = await release(
        f"{channel_sim.url}/sim/bills/wechatpay/{today()}",
        {"discrepancies": [{"kind": "drop", "reference": "NO-SUCH-ORDER"}]},
    )
    assert answer.status_code == 400 and "NO-SUCH-ORDER" in answer.text


async def test_alipay_bill_fetched_and_read(
    session: aiohttp.ClientSession, channel_sim: Service, keys: StaticKeys
) -> None:
    gateway = f"{channel_sim.url}/gateway.do"
    with pytest.raises(StatementUnavailable) as early:
        await fetch_alipay_bill(session, gateway, keys.alipay_keys, today())
    assert early.value.code == NOT_READY

    paid, refund_no = await pay_and_refund(session, channel_sim, keys, Channel.ALIPAY)
    answer = await release(
        f"{channel_sim.url}/sim/bills/alipay/{today()}",
        {"discrepancies": [{"kind": "drop", "reference": refund_no, "lineKind": "REFUND"}]},
    )
    assert answer.status_code == 200, answer.text
    statement = parse_alipay_bill(
        await fetch_alipay_bill(session, gateway, keys.alipay_keys, today()), today()
    )
    assert [(line.kind, line.amount_fen, line.fee_fen) for line in statement.lines] == [
        (LineKind.PAYMENT, 100, 1),
        (LineKind.PAYMENT, 29, 0),
    ]  # the refund dropped, as asked
    assert statement.lines[0].reference == paid

    answer = await release(f"{channel_sim.url}/sim/bills/alipay/{today()}", {})
    content = await fetch_alipay_bill(session, gateway, keys.alipay_keys, today())
    assert await fetch_alipay_bill(session, gateway, keys.alipay_keys, today()) == content
    statement = parse_alipay_bill(content, today())
    refund = [line for line in statement.lines if line.kind is LineKind.REFUND]
    assert [(line.reference, line.amount_fen, line.status) for line in refund] == [
        (refund_no, 25, "退款")
    ]


async def test_bank_file_fetched_once_and_read(
    session: aiohttp.ClientSession, bank_sim: Service, env: ModuleEnv
) -> None:
    with pytest.raises(StatementUnavailable) as early:
        await fetch_bank_file(session, bank_sim.url, env.app_id, today())
    assert early.value.code == NOT_READY

    account, prefix = "6222020000000777", f"T{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=30) as http:
        started = await http.post(f"{bank_sim.url}/scenarios/transfers", json={
            "count": 4, "accounts": [account], "minAmount": 1000, "maxAmount": 1000,
            "seed": 3, "recordPrefix": prefix, "concurrency": 4,
        })  # fmt: skip
        assert started.status_code == 202, started.text
        scenario = started.json()["scenarioId"]
        for _ in range(200):
            state = (await http.get(f"{bank_sim.url}/scenarios/{scenario}")).json()["status"]
            if state in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        assert state == "done"
        payout = await http.post(f"{bank_sim.url}/bank/v1/transfers", json={
            "bank_request_id": "PAY-1", "payer_account": account, "amount": "1500",
            "currency": "CNY", "payee_account_no": "6217000011112222",
            "payee_account_name": "收款人", "payee_bank_name": "工商银行",
            "notify_url": f"{NOTIFY}/bank",
        })  # fmt: skip
        assert payout.status_code < 500, payout.text
        for _ in range(100):
            answer = (await http.get(f"{bank_sim.url}/bank/v1/transfers/PAY-1")).json()
            if answer["status"] != "PROCESSING":
                break
            await asyncio.sleep(0.1)
        assert answer["status"] == "SUCCESS"
        released = await http.put(
            f"{bank_sim.url}/bank/v1/simulator/daily-files/{today()}",
            json={"discrepancies": [{"kind": "fee", "reference": "PAY-1", "feeFen": 2}]},
        )
        assert released.status_code == 200, released.text

    name, content = await fetch_bank_file(session, bank_sim.url, env.app_id, today())
    assert name == f"FUNDS_{env.app_id}_{today():%Y%m%d}.txt"
    statement = parse_bank_file(content, today())
    mine = [line for line in statement.lines if line.account == account]
    assert sorted((line.kind, line.reference, line.amount_fen) for line in mine) == sorted(
        [(LineKind.CREDIT, f"{prefix}{n:08d}", 1000) for n in range(1, 5)]
        + [(LineKind.DEBIT, "PAY-1", 1500)]
    )
    assert [line.fee_fen for line in mine if line.reference == "PAY-1"] == [2]
    closing = {b.account: b.balance_fen for b in statement.closing_balances}
    assert closing[account] == 2500


async def test_a_bank_download_url_works_once(bank_sim: Service, env: ModuleEnv) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        await http.put(f"{bank_sim.url}/bank/v1/simulator/daily-files/{today()}", json={})
        offer = await http.post(
            f"{bank_sim.url}/bank/v1/files/daily",
            json={"app_id": env.app_id, "file_date": today().isoformat()},
        )
        assert offer.status_code == 200, offer.text
        url = offer.json()["download_url"]
        assert (await http.get(url)).status_code == 200
        assert (await http.get(url)).status_code == 404
        other = await http.post(
            f"{bank_sim.url}/bank/v1/files/daily",
            json={"app_id": "SOMEONE-ELSE", "file_date": today().isoformat()},
        )
        assert other.status_code == 404
