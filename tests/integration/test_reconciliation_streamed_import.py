"""A statement streamed into Postgres as it is parsed (``intake.take_file``): WeChat Pay's bill,
plain and gzip, in many chunks, its lines loaded by COPY while the parse goes on. A bill refused
only at its summary -- after every detail line went to COPY -- changes nothing: no file, no
line, no run, and the day's current file is still current."""

from __future__ import annotations

import gzip
from datetime import date

import pytest
from support.env import ModuleEnv
from support.recon_world import Order, add_orders, at

from fundhub.channel_simulator.bills import BillRow, wechatpay_bill
from fundhub.reconciliation.fees import DEFAULT_CHANNEL_FEE_PPM, channel_fee
from fundhub.reconciliation.intake import Intake, take_file
from fundhub.reconciliation.statement import Source, StatementRejected

DAY = date(2026, 9, 14)
N = 2_500


def rows() -> list[BillRow]:
    return [
        BillRow("PAYMENT", at(DAY, 10, i // 60 % 60, i % 60), "wxapp", "1900000001",
                f"STR{i:05d}", f"42STR{i:05d}", 1000 + i, "goods", "SUCCESS",
                fee_fen=channel_fee(1000 + i, DEFAULT_CHANNEL_FEE_PPM))
        for i in range(N)
    ]  # fmt: skip


async def counts(env: ModuleEnv) -> tuple[int, int, int]:
    return (
        await env.pool.fetchval("SELECT count(*) FROM recon_files WHERE day = $1", DAY),
        await env.pool.fetchval(
            "SELECT count(*) FROM recon_lines l JOIN recon_files f USING (file_id) "
            "WHERE f.day = $1",
            DAY,
        ),
        await env.pool.fetchval("SELECT count(*) FROM recon_runs WHERE day = $1", DAY),
    )


async def test_a_streamed_bill_loads_and_one_refused_at_its_summary_changes_nothing(
    env: ModuleEnv,
) -> None:
    async with env.pool.acquire() as conn:
        await add_orders(
            conn,
            [Order(f"STR{i:05d}", 1000 + i, "WECHATPAY", "PAID", at(DAY, 10, i // 60 % 60, i % 60))
             for i in range(N)],
        )  # fmt: skip
    bill = wechatpay_bill(rows())
    lines = bill.decode().split("\r\n")
    summary = lines[-2]
    assert summary.startswith(f"`{N},")
    wrong = "\r\n".join([*lines[:-2], summary.replace(f"`{N},", f"`{N + 1},", 1), ""]).encode()

    with pytest.raises(StatementRejected) as refused:
        await take_file(
            env.pool, Source.WECHATPAY, DAY, "b.csv", wrong, by="t", settings=env.settings
        )
    assert refused.value.line_no == N + 3 and "总交易单数" in refused.value.reason
    assert await counts(env) == (0, 0, 0)

    taken = await take_file(
        env.pool, Source.WECHATPAY, DAY, "b.csv.gz", gzip.compress(bill), by="t",
        settings=env.settings,
    )  # fmt: skip
    assert taken.run is not None and taken.run.counts["matched"] == N
    assert sum(taken.run.counts.values()) == N
    row = await env.pool.fetchrow(
        "SELECT line_count, amount_fen, lines_fen FROM recon_files WHERE file_id = $1",
        taken.imported.file_id,
    )
    total = sum(1000 + i for i in range(N))
    assert (row["line_count"], row["amount_fen"], row["lines_fen"]) == (N, total, total)

    # A corrected file refused at its end: the first stays current, its run too.
    with pytest.raises(StatementRejected):
        await take_file(
            env.pool, Source.WECHATPAY, DAY, "c.csv", gzip.compress(wrong), by="t",
            settings=env.settings,
        )  # fmt: skip
    assert await counts(env) == (1, N, 1)
    current = await env.pool.fetchval(
        "SELECT file_id FROM recon_files WHERE day = $1 AND superseded_by IS NULL", DAY
    )
    assert current == taken.imported.file_id
    again = await take_file(
        env.pool, Source.WECHATPAY, DAY, "b.csv", bill, by="t", settings=env.settings
    )
    assert again.imported.created and again.imported.superseded == taken.imported.file_id


async def test_several_merchant_apps_give_several_bills_a_day_and_the_run_reads_them_all(
    env: ModuleEnv,
) -> None:
    day = date(2026, 9, 15)
    orders = [Order(f"APP{i:03d}", 500 + i, "WECHATPAY", "PAID", at(day, 9, i)) for i in range(8)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, orders)

    def bill(mchid: str, chosen: list[Order], extra: int = 0) -> bytes:
        return wechatpay_bill(
            [BillRow("PAYMENT", o.paid_at or at(day, 9), "wxapp", mchid, o.order_id,
                     "42" + o.order_id, o.amount + (extra if n == 0 else 0), "goods", "SUCCESS",
                     fee_fen=channel_fee(o.amount, DEFAULT_CHANNEL_FEE_PPM))
             for n, o in enumerate(chosen)]
        )  # fmt: skip

    async def take(data: bytes) -> Intake:
        return await take_file(
            env.pool, Source.WECHATPAY, day, "m.csv", data, by="t", settings=env.settings
        )

    first = await take(bill("1900000001", orders[:5]))
    assert first.run is not None
    assert (first.run.counts["matched"], first.run.counts["missing_at_channel"]) == (5, 3)
    second = await take(bill("1900000002", orders[5:]))
    assert second.imported.superseded is None  # another merchant's bill joins the day's
    assert second.run is not None and second.run.counts["matched"] == 8
    assert sum(second.run.counts.values()) == 8
    # A corrected bill of the first merchant supersedes its own file only.
    corrected = await take(bill("1900000001", orders[:5], extra=7))
    assert corrected.imported.superseded == first.imported.file_id
    assert corrected.run is not None
    assert (corrected.run.counts["matched"], corrected.run.counts["amount_mismatch"]) == (7, 1)
    current = await env.pool.fetch(
        "SELECT file_id, merchant FROM recon_files WHERE day = $1 AND superseded_by IS NULL "
        "ORDER BY file_id",
        day,
    )
    assert [(r["file_id"], r["merchant"]) for r in current] == [
        (second.imported.file_id, "1900000002"),
        (corrected.imported.file_id, "1900000001"),
    ]
    run_files = await env.pool.fetchval(
        "SELECT file_ids FROM recon_runs WHERE run_id = $1", corrected.run.run_id
    )
    assert run_files == [second.imported.file_id, corrected.imported.file_id]
    # A bill naming two merchants is no one's: refused with its line.
    lines = bill("1900000001", orders[:2]).split(b"\r\n")
    lines[2] = lines[2].replace(b"`1900000001", b"`1900000009", 1)
    with pytest.raises(StatementRejected) as refused:
        await take(b"\r\n".join(lines))
    assert refused.value.line_no == 3 and "商户号 1900000009" in refused.value.reason
