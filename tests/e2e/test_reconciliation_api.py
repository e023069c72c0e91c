"""Reconciliation through the operator's CLI and the gateway's API (real processes, real
Postgres): a WeChat Pay bill as the channel simulator writes it, imported twice (nothing
changes) and corrected (the run redone, both kept); the runs, counts and sums per class, the
discrepancies and the daily report read back; an adjustment under four eyes; the upload."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from urllib.parse import urlencode

import httpx
import pytest
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.processes import Service, gateway
from support.recon_world import Order, add_orders, at, ensure_account

from fundhub.channel_simulator.bills import BillRow, channel_fee, wechatpay_bill
from fundhub.common.signing import body_signature

DAY = date(2026, 5, 1)
MAX_UPLOAD = 64 * 1024 * 1024
ACCOUNT = "6222020000005001"


def bill_rows(orders: list[Order]) -> list[BillRow]:
    return [
        BillRow(
            "PAYMENT",
            o.paid_at or at(DAY, 12),
            "wxapp",
            "1900000001",
            o.order_id,
            "4200" + o.order_id,
            o.amount,
            "goods",
            "SUCCESS",
            fee_fen=channel_fee(o.amount, 6000),
        )
        for o in orders
    ]


def create_key(env: ModuleEnv, name: str, scopes: str, accounts: str = "*") -> dict[str, str]:
    out = env.cli(
        "api-key", "create", "--name", name, "--scopes", scopes, "--accounts", accounts, "--json",
    )  # fmt: skip
    created: dict[str, str] = json.loads(out)
    return created


@pytest.fixture(scope="module")
async def api(env: ModuleEnv) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    gw = gateway(env)
    gw.start()
    try:
        await gw.wait_ready()
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            yield gw, http
    finally:
        gw.stop()


async def _post(
    http: httpx.AsyncClient, key: dict[str, str], path: str, body: bytes, query=None
) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = signed_headers(key["keyId"], key["secret"], "POST", path, query, body)
    headers["Content-Type"] = "application/octet-stream"
    url = path + ("?" + urlencode(query) if query else "")
    return await http.post(url, content=body, headers=headers)


async def test_import_read_act_and_upload(
    env: ModuleEnv, api: tuple[Service, httpx.AsyncClient]
) -> None:
    _, http = api
    orders = [Order(f"ORDR{i:04d}", 1000 + i, paid_at=at(DAY, 10, i)) for i in range(20)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, orders)
        await ensure_account(conn, ACCOUNT)
    agreeing = env.tmp / "wechatpay-ok.csv"
    agreeing.write_bytes(wechatpay_bill(bill_rows(orders)))

    first = json.loads(env.cli("recon", "import", "--source", "wechatpay", "--date", DAY.isoformat(), str(agreeing), "--json"))  # fmt: skip
    assert first["created"] and first["lines"] == 20
    assert first["run"]["counts"] == {
        "matched": 20, "missingOnPlatform": 0, "missingAtChannel": 0, "amountMismatch": 0,
        "statusMismatch": 0, "duplicate": 0, "feeDifference": 0,
    }  # fmt: skip
    again = json.loads(env.cli("recon", "import", "--source", "wechatpay", "--date", DAY.isoformat(), str(agreeing), "--json"))  # fmt: skip
    assert again["created"] is False and again["run"] is None

    rows = bill_rows(orders)
    rows[3] = replace(rows[3], total_fen=rows[3].total_fen + 50)
    corrected = env.tmp / "wechatpay-v2.csv"
    corrected.write_bytes(wechatpay_bill(rows))
    second = json.loads(env.cli("recon", "import", "--source", "wechatpay", "--date", DAY.isoformat(), str(corrected), "--json"))  # fmt: skip
    assert second["supersededFileId"] == first["fileId"]
    assert second["run"]["counts"]["amountMismatch"] == 1
    assert second["run"]["sums"]["amountMismatch"] == orders[3].amount + 50
    assert second["redoneOnward"] == []  # no later day run: nothing else redone

    alice = create_key(env, "alice", "reconciliation:read,reconciliation:write")
    bob = create_key(env, "bob", "reconciliation:read,reconciliation:write")
    narrow = create_key(env, "narrow", "reconciliation:read", ACCOUNT)

    runs = await signed_get(http, alice["keyId"], alice["secret"], "/v1/reconciliation/runs",
                            [("source", "wechatpay"), ("date", DAY.isoformat())])  # fmt: skip
    assert runs.status_code == 200, runs.text
    assert runs.headers["X-Signature"] == body_signature(alice["secret"], runs.content)
    states = {r["runId"]: r["state"] for r in runs.json()["items"]}
    assert states == {first["run"]["runId"]: "SUPERSEDED", second["run"]["runId"]: "CURRENT"}
    run_id = second["run"]["runId"]
    run = await signed_get(
        http, alice["keyId"], alice["secret"], f"/v1/reconciliation/runs/{run_id}"
    )
    assert run.json()["counts"]["matched"] == 19 and run.json()["sums"]["amountMismatch"] == 1053
    refused = await signed_get(http, narrow["keyId"], narrow["secret"], "/v1/reconciliation/runs")
    assert (refused.status_code, refused.json()["errorCode"]) == (403, "E008_ACCOUNT_FORBIDDEN")

    found = await signed_get(http, alice["keyId"], alice["secret"], "/v1/reconciliation/discrepancies",
                             [("runId", run_id), ("class", "amountMismatch")])  # fmt: skip
    [item] = found.json()["items"]
    assert (item["reference"], item["differenceFen"]) == ("ORDR0003", 50)
    assert item["statement"]["lineNo"] and item["platform"]["state"] == "PAID"
    path = f"/v1/reconciliation/discrepancies/{item['discrepancyId']}/actions"
    proposal = {"action": "propose", "reason": "channel paid more",
                "adjustment": {"accountId": ACCOUNT, "amountFen": 50}}  # fmt: skip
    proposed = await _post(http, alice, path, json.dumps(proposal).encode())
    assert proposed.json()["state"] == "ADJUSTMENT_PROPOSED", proposed.text
    own = await _post(http, alice, path, b'{"action": "approve"}')
    assert (own.status_code, own.json()["errorCode"]) == (403, "E062_OWN_APPROVAL")
    approved = await _post(http, bob, path, b'{"action": "approve", "reason": "checked"}')
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["state"] == "RESOLVED" and body["entryId"]
    assert [(a["action"], a["actor"]) for a in body["actions"]] == [
        ("PROPOSE", alice["keyId"]),
        ("APPROVE", bob["keyId"]),
    ]
    again_approved = await _post(http, bob, path, b'{"action": "approve"}')
    assert again_approved.json()["errorCode"] == "E061_DISCREPANCY_STATE_CONFLICT"
    await assert_ledger_invariants(env.pool)

    csv_report = await signed_get(http, alice["keyId"], alice["secret"],
                                  f"/v1/reconciliation/runs/{run_id}/report")  # fmt: skip
    assert csv_report.headers["content-type"].startswith("text/csv")
    assert "amountMismatch,1,1053" in csv_report.text
    html = await signed_get(http, alice["keyId"], alice["secret"],
                            f"/v1/reconciliation/runs/{run_id}/report", [("format", "html")])  # fmt: skip
    assert "<table>" in html.text and "ORDR0003" in html.text

    # Upload: another day's bill; the same bytes again; a broken file refused with its line.
    day2 = date(2026, 5, 2)
    later = [Order(f"ORDS{i:04d}", 2000 + i, paid_at=at(day2, 11, i)) for i in range(5)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, later)
    data = wechatpay_bill(bill_rows(later))
    query = [("source", "wechatpay"), ("date", day2.isoformat()), ("name", "bill.csv")]
    uploaded = await _post(http, alice, "/v1/reconciliation/statements", data, query)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["run"]["counts"]["matched"] == 5
    repeated = await _post(http, alice, "/v1/reconciliation/statements", data, query)
    assert (repeated.status_code, repeated.json()["created"]) == (200, False)
    broken = data.replace(b"`20.0", b"`2x.0", 1)
    assert broken != data
    rejected = await _post(http, alice, "/v1/reconciliation/statements", broken, query)
    assert (rejected.status_code, rejected.json()["errorCode"]) == (422, "E060_STATEMENT_REJECTED")
    assert "bill.csv:" in rejected.json()["msg"]
    reader_only = await _post(http, narrow, "/v1/reconciliation/statements", data, query)
    assert reader_only.status_code == 403

    listed = json.loads(env.cli("recon", "discrepancies", "--run", run_id, "--json"))
    assert [d["state"] for d in listed] == ["RESOLVED"]


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


async def test_hostile_uploads_are_refused_with_a_clear_code_and_import_nothing(
    env: ModuleEnv, api: tuple[Service, httpx.AsyncClient]
) -> None:
    _, http = api
    day = date(2026, 5, 3)
    key = create_key(env, "uploader", "reconciliation:read,reconciliation:write")
    path = "/v1/reconciliation/statements"

    def query(source: str) -> list[tuple[str, str]]:
        return [("source", source), ("date", day.isoformat()), ("name", "up.bin")]

    async def refused(source: str, body: bytes) -> tuple[int, str, str]:
        answer = await _post(http, key, path, body, query(source))
        return answer.status_code, answer.json()["errorCode"], answer.json()["msg"]

    # A zip bomb: 20 MB of comment lines (before the details' marker) pack ~1,000 to 1;
    # refused while unpacking, at 100 times the member's packed size.
    seller = "2088000000000001"
    comments = (b"#" + b"-" * 1000 + b"\r\n") * 20_000
    bomb = _zip({f"{seller}_20260503_业务明细.csv": comments,
                 f"{seller}_20260503_业务明细(汇总).csv": b"#\r\n"})  # fmt: skip
    assert len(bomb) < 100_000
    status, code, msg = await refused("alipay", bomb)
    assert (status, code) == (422, "E076_STATEMENT_TOO_LARGE_UNPACKED"), msg
    # Garbage: not a zip; bytes that are no bank file; a bill cut short.
    assert (await refused("alipay", os.urandom(4096)))[:2] == (422, "E060_STATEMENT_REJECTED")
    status, code, msg = await refused("bank", b"H|FUNDS|x\n" + b"garbage\n" * 100)
    assert (status, code, msg) == (
        422,
        "E060_STATEMENT_REJECTED",
        "up.bin:1: not the header record (H) of a daily file",
    )
    status, code, msg = await refused("bank", os.urandom(4096))
    assert (status, code) == (422, "E060_STATEMENT_REJECTED") and msg.startswith("up.bin:")
    cut = wechatpay_bill(bill_rows([Order("ORDT0001", 1000, paid_at=at(day, 9))]))[:-40]
    assert (await refused("wechatpay", cut))[:2] == (422, "E060_STATEMENT_REJECTED")
    # A wrong Content-Type: refused before the body is read.
    headers = signed_headers(key["keyId"], key["secret"], "POST", path, query("bank"), b"{}")
    wrong = await http.post(path + "?" + urlencode(query("bank")), content=b"{}",
                            headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    assert (wrong.status_code, wrong.json()["errorCode"]) == (415, "E075_UNSUPPORTED_MEDIA_TYPE")
    # Past the cap, sent chunked (no length declared): refused while reading, at the cap.
    big = {**headers, "Content-Type": "application/octet-stream"}

    async def endless() -> AsyncIterator[bytes]:
        chunk = b"y" * (1 << 20)
        for _ in range(MAX_UPLOAD // len(chunk) + 2):
            yield chunk

    try:
        streamed = await http.post(path + "?" + urlencode(query("bank")), content=endless(),
                                   headers=big)  # fmt: skip
    except httpx.TransportError:  # the gateway may close while the rest is still being sent
        pass
    else:
        assert (streamed.status_code, streamed.json()["errorCode"]) == (
            413,
            "E011_PAYLOAD_TOO_LARGE",
        )
    async with env.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM recon_files WHERE day = $1", day) == 0
