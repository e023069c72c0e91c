"""Reconciliation runs against real Postgres: the platform's records of a day (written as their
contexts write them), statements read back from them, then changed to inject each class.

Each test takes its own business day, so the module's database is shared without overlap.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from support.env import ModuleEnv
from support.recon_world import (
    Order,
    Payout,
    Refund,
    Transfer,
    add_orders,
    add_payouts,
    add_refunds,
    add_transfers,
    at,
    bank_lines,
    channel_lines,
    closing_balances,
    statement,
)

from fundhub.reconciliation.classes import MatchClass
from fundhub.reconciliation.matching import (  # the platform's side, to EXPLAIN
    NoStatement,
    RunPolicy,
    RunResult,
    _expected_sql,
    reconcile,
)
from fundhub.reconciliation.statement import (
    ClosingBalance,
    LineKind,
    Source,
    Statement,
    StatementLine,
)
from fundhub.reconciliation.store import import_statement, sha256_of

OPERATOR = "ops-alice"


async def load_and_run(pool: asyncpg.Pool, st: Statement, tag: str = "") -> RunResult | None:
    """Import (by content) and run, as ``recon import`` does; None when the file was known."""
    digest = sha256_of(repr(st).encode() + tag.encode())
    async with pool.acquire() as conn, conn.transaction():
        imported = await import_statement(
            conn, st, name=f"{st.source}-{st.day}.csv", sha256=digest, imported_by=OPERATOR
        )
        if not imported.created:
            return None
        return await reconcile(conn, st.source, st.day, run_by=OPERATOR)


async def discrepancies(pool: asyncpg.Pool, run_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM recon_discrepancies WHERE run_id = $1 ORDER BY class, reference", run_id
    )


def paid_orders(day: date, prefix: str, n: int, channel: str = "WECHATPAY") -> list[Order]:
    return [
        Order(f"{prefix}{i:04d}", 1000 + 37 * i, channel, "PAID", at(day, 9, i % 60, i % 50))
        for i in range(n)
    ]


async def test_a_day_that_agrees_reconciles_with_no_discrepancy(env: ModuleEnv) -> None:
    day = date(2026, 3, 1)
    orders = paid_orders(day, "ORDA", 40)
    async with env.pool.acquire() as conn:
        await add_orders(conn, orders)
        await add_refunds(
            conn,
            [Refund(f"RFDA{i}", orders[i].order_id, 500, "SUCCESS", at(day, 15)) for i in range(5)],
        )
        lines = await channel_lines(conn, Source.WECHATPAY, day)
    run = await load_and_run(env.pool, statement(Source.WECHATPAY, day, lines))
    assert run is not None
    assert run.counts[MatchClass.MATCHED] == 45
    assert sum(run.counts.values()) == 45
    assert run.sums[MatchClass.MATCHED] == sum(o.amount for o in orders) + 5 * 500
    assert await discrepancies(env.pool, run.run_id) == []


async def test_every_class_is_reported_with_its_count_sum_and_both_sides(env: ModuleEnv) -> None:
    day = date(2026, 3, 2)
    orders = paid_orders(day, "ORDB", 30, "ALIPAY")
    closed = Order("ORDBCLOSED", 777, "ALIPAY", "CLOSED", None)
    async with env.pool.acquire() as conn:
        await add_orders(conn, [*orders, closed])
        lines = await channel_lines(conn, Source.ALIPAY, day)
    by_ref = {li.reference: li for li in lines}
    ghost = replace(by_ref["ORDB0000"], reference="ORDBGHOST", amount_fen=4321, fee_fen=26)
    dropped = by_ref.pop("ORDB0001")  # missing at the channel
    by_ref["ORDB0002"] = replace(by_ref["ORDB0002"], amount_fen=by_ref["ORDB0002"].amount_fen + 1)
    by_ref["ORDB0003"] = replace(by_ref["ORDB0003"], fee_fen=by_ref["ORDB0003"].fee_fen + 5)
    closed_line = replace(by_ref["ORDB0004"], reference="ORDBCLOSED", amount_fen=777, fee_fen=5)
    changed = [*by_ref.values(), ghost, closed_line, by_ref["ORDB0005"]]  # the last: repeated
    run = await load_and_run(env.pool, statement(Source.ALIPAY, day, changed))
    assert run is not None
    expected = {
        MatchClass.MATCHED: 27,
        MatchClass.MISSING_ON_PLATFORM: 1,
        MatchClass.MISSING_AT_CHANNEL: 1,
        MatchClass.AMOUNT_MISMATCH: 1,
        MatchClass.STATUS_MISMATCH: 1,
        MatchClass.DUPLICATE: 1,
        MatchClass.FEE_DIFFERENCE: 1,
    }
    assert run.counts == {c.value: n for c, n in expected.items()}
    assert run.sums[MatchClass.MISSING_ON_PLATFORM] == 4321
    assert run.sums[MatchClass.MISSING_AT_CHANNEL] == dropped.amount_fen
    assert run.sums[MatchClass.AMOUNT_MISMATCH] == by_ref["ORDB0002"].amount_fen
    assert run.sums[MatchClass.STATUS_MISMATCH] == 777
    assert run.sums[MatchClass.DUPLICATE] == by_ref["ORDB0005"].amount_fen
    found = {r["class"]: r for r in await discrepancies(env.pool, run.run_id)}
    assert set(found) == {c.value for c in expected} - {"matched"}
    amount = found["amount_mismatch"]
    assert amount["statement_fen"] == amount["platform_fen"] + 1
    assert amount["statement"]["lineNo"] == amount["line_no"]
    assert amount["platform"]["state"] == "PAID"
    assert found["status_mismatch"]["platform"]["state"] == "CLOSED"
    assert found["missing_at_channel"]["statement"] is None
    assert found["missing_on_platform"]["platform"] is None
    assert found["fee_difference"]["statement_fee"] == found["fee_difference"]["platform_fee"] + 5


async def test_the_same_file_twice_changes_nothing_and_a_corrected_one_supersedes(
    env: ModuleEnv,
) -> None:
    day = date(2026, 3, 3)
    async with env.pool.acquire() as conn:
        await add_orders(conn, paid_orders(day, "ORDC", 10))
        lines = await channel_lines(conn, Source.WECHATPAY, day)
    wrong = statement(Source.WECHATPAY, day, lines[:-1])
    first = await load_and_run(env.pool, wrong)
    assert first is not None and first.counts[MatchClass.MISSING_AT_CHANNEL] == 1
    before = await _table_counts(env.pool)
    assert await load_and_run(env.pool, wrong) is None
    assert await _table_counts(env.pool) == before
    corrected = await load_and_run(env.pool, statement(Source.WECHATPAY, day, lines), "v2")
    assert corrected is not None and corrected.superseded == first.run_id
    assert corrected.counts[MatchClass.MATCHED] == 10
    runs = await env.pool.fetch(
        "SELECT r.run_id, r.state, f.superseded_by IS NULL AS current_file FROM recon_runs r "
        "JOIN recon_files f USING (file_id) WHERE r.source = 'wechatpay' AND r.day = $1 "
        "ORDER BY r.started_at",
        day,
    )
    assert [(r["run_id"], r["state"], r["current_file"]) for r in runs] == [
        (first.run_id, "SUPERSEDED", False),
        (corrected.run_id, "CURRENT", True),
    ]
    # the first run's evidence is kept for audit
    assert len(await discrepancies(env.pool, first.run_id)) == 1


async def _table_counts(pool: asyncpg.Pool) -> tuple[Any, ...]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM recon_files), (SELECT count(*) FROM recon_lines), "
        "(SELECT count(*) FROM recon_runs), (SELECT count(*) FROM recon_discrepancies)"
    )
    assert row is not None
    return tuple(row)


async def test_payments_across_midnight_are_matched_the_next_day_not_reported_twice(
    env: ModuleEnv,
) -> None:
    day = date(2026, 3, 4)
    nxt = day + timedelta(days=1)
    late = Order("ORDDLATE", 5000, paid_at=at(day, 23, 59, 59, 800_000))  # ours: day
    early = Order("ORDDEARLY", 6000, paid_at=at(nxt, 0, 0, 0, 200_000))  # ours: next day
    normal = [Order(f"ORDD{i}", 100 + i, paid_at=at(day, 12, i)) for i in range(3)]
    normal_next = [Order(f"ORDE{i}", 200 + i, paid_at=at(nxt, 12, i)) for i in range(3)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, [late, early, *normal, *normal_next])
        day_lines = await channel_lines(conn, Source.WECHATPAY, day)
        next_lines = await channel_lines(conn, Source.WECHATPAY, nxt)
    # The channel's clock puts the late one in the next day's bill, the early one in this day's.
    late_line = next(li for li in day_lines if li.reference == "ORDDLATE")
    early_line = next(li for li in next_lines if li.reference == "ORDDEARLY")
    day_bill = [li for li in day_lines if li is not late_line]
    day_bill.append(replace(early_line, occurred_at=at(day, 23, 59, 59, 900_000)))
    next_bill = [li for li in next_lines if li is not early_line]
    next_bill.append(replace(late_line, occurred_at=at(nxt, 0, 0, 0, 300_000)))

    first = await load_and_run(env.pool, statement(Source.WECHATPAY, day, day_bill))
    assert first is not None
    assert first.carried_out == 2
    assert sum(n for c, n in first.counts.items() if c != "matched") == 0
    assert first.counts["matched"] == 3
    second = await load_and_run(env.pool, statement(Source.WECHATPAY, nxt, next_bill))
    assert second is not None
    assert second.carried_in == 2
    assert second.counts["matched"] == 5
    assert sum(n for c, n in second.counts.items() if c != "matched") == 0
    assert await discrepancies(env.pool, second.run_id) == []


async def test_redoing_a_day_redoes_the_next_day_that_read_its_hand_overs(
    env: ModuleEnv,
) -> None:
    """The next day's run read what the day handed over; a new bill for the day changes that,
    and the next day's run is redone with it (it once stood on the old hand-overs)."""
    day = date(2026, 3, 14)
    nxt = day + timedelta(days=1)
    early = Order("ORDREARLY", 6100, paid_at=at(nxt, 0, 0, 0, 200_000))  # ours: next day
    normal = [Order(f"ORDR{i}", 300 + i, paid_at=at(day, 12, i)) for i in range(2)]
    normal_next = [Order(f"ORDS{i}", 400 + i, paid_at=at(nxt, 12, i)) for i in range(2)]
    async with env.pool.acquire() as conn:
        await add_orders(conn, [early, *normal, *normal_next])
        day_lines = await channel_lines(conn, Source.WECHATPAY, day)
        next_lines = await channel_lines(conn, Source.WECHATPAY, nxt)
    # The channel put the early payment in the day's bill: handed to the next day, matched there.
    early_line = next(li for li in next_lines if li.reference == "ORDREARLY")
    moved = replace(early_line, occurred_at=at(day, 23, 59, 59, 900_000))
    next_bill = [li for li in next_lines if li is not early_line]
    first = await load_and_run(env.pool, statement(Source.WECHATPAY, day, [*day_lines, moved]))
    second = await load_and_run(env.pool, statement(Source.WECHATPAY, nxt, next_bill))
    assert first is not None and second is not None
    assert first.carried_out == 1 and second.carried_in == 1
    assert await discrepancies(env.pool, second.run_id) == []

    # A corrected bill for the day without that line: the next day has nothing to pair it with.
    again = await load_and_run(env.pool, statement(Source.WECHATPAY, day, day_lines), tag="v2")
    assert again is not None and again.carried_out == 0
    assert len(again.redone_onward) == 1
    async with env.pool.acquire() as conn:
        current = await conn.fetchrow(
            "SELECT run_id, carried_in FROM recon_runs WHERE source = 'wechatpay' AND day = $1 "
            "AND state = 'CURRENT'",
            nxt,
        )
    assert current is not None and current["run_id"] == again.redone_onward[0]
    assert current["carried_in"] == 0
    found = await discrepancies(env.pool, current["run_id"])
    assert [(d["class"], d["reference"]) for d in found] == [("missing_at_channel", "ORDREARLY")]

    # Redone with the same hand-overs, the next day's run stands.
    same = await load_and_run(env.pool, statement(Source.WECHATPAY, day, day_lines), tag="v3")
    assert same is not None and same.redone_onward == ()


async def test_bank_balances_agree_or_are_explained_by_the_days_discrepancies(
    env: ModuleEnv,
) -> None:
    day = date(2026, 3, 6)
    a, b, c = "6222020000009001", "6222020000009002", "6222020000009003"
    async with env.pool.acquire() as conn:
        await add_transfers(
            conn,
            [
                Transfer("TRF1", a, 100_000, at(day, 9), fee=10),
                Transfer("TRF2", b, 50_000, at(day, 10)),
                Transfer("TRF3", c, 70_000, at(day, 10)),
            ],
        )
        await add_payouts(conn, [Payout("PAY1", a, 30_000, at(day, 11))])
        lines = await bank_lines(conn, day)
        closing = await closing_balances(conn, day, [a, b, c])
    # b: the bank never saw TRF2 (explained); c: the bank holds 1 fen more, nothing says why.
    lines = [li for li in lines if li.reference != "TRF2"]
    bank_b = next(x for x in closing if x.account == b)
    bank_c = next(x for x in closing if x.account == c)
    closing = [x for x in closing if x.account == a] + [
        replace(bank_b, balance_fen=bank_b.balance_fen - 50_000),
        replace(bank_c, balance_fen=bank_c.balance_fen + 1),
    ]
    run = await load_and_run(env.pool, statement(Source.BANK, day, lines, closing))
    assert run is not None
    assert run.counts["matched"] == 3 and run.counts["missing_at_channel"] == 1
    assert run.unexplained == 1
    checks = {
        r["account"]: (
            r["ledger_fen"],
            r["bank_fen"],
            r["difference"],
            r["explained_fen"],
            r["state"],
        )
        for r in await env.pool.fetch(
            "SELECT * FROM recon_balance_checks WHERE run_id = $1", run.run_id
        )
    }
    assert checks[a] == (70_000, 70_000, 0, 0, "AGREED")
    assert checks[b] == (50_000, 0, -50_000, -50_000, "EXPLAINED")
    assert checks[c] == (70_000, 70_001, 1, 0, "UNEXPLAINED")


async def test_a_refund_debit_the_bank_did_not_book_is_missing_there_whatever_its_state(
    env: ModuleEnv,
) -> None:
    """The platform's record of a member debit is made when the refund took the shares; the
    bank's line matches it per member; one the bank never booked (here: it failed there) is
    missing at the bank, its state kept as evidence."""
    day = date(2026, 3, 8)
    acc = "6222020000009008"
    async with env.pool.acquire() as conn:
        await add_transfers(conn, [Transfer("TRF8", acc, 10_000, at(day, 9))])
        lines = await bank_lines(conn, day)
        await add_orders(conn, [Order("O-RD8", 5_000, paid_at=at(day, 8))])
        await add_refunds(conn, [Refund("RD8-OK", "O-RD8", 700), Refund("RD8-NO", "O-RD8", 300)])
        for refund_id, fen, state in (("RD8-OK", 700, "SUCCESS"), ("RD8-NO", 300, "FAILED")):
            await conn.execute(
                "INSERT INTO order_refund_debits (refund_id, order_id, order_no, settlement_id,"
                " currency, amount, members, state, created_at) VALUES ($1, 'O-RD8', 'O-RD8',"
                " 'STL8', 'CNY', $2, $3::text::jsonb, $4, $5)",
                refund_id,
                fen,
                f'[{{"memberId": "mch_8", "accountId": "acc_8", "amount": {fen}}}]',
                state,
                at(day, 12),
            )
    lines.append(
        StatementLine(0, LineKind.DEBIT, "RD8-OK", "BD8", 700, 0, "SUCCESS", at(day, 12, 0, 1),
                      account="mch_8", business="SPLIT_REFUND")
    )  # fmt: skip
    run = await load_and_run(env.pool, statement(Source.BANK, day, lines))
    assert run is not None
    assert run.counts["matched"] == 2 and run.counts["missing_at_channel"] == 1
    assert sum(run.counts.values()) == 3, run.counts
    row = await env.pool.fetchrow(
        "SELECT reference, platform_fen, platform FROM recon_discrepancies WHERE run_id = $1",
        run.run_id,
    )
    assert row is not None
    assert (row["reference"], row["platform_fen"]) == ("SPLIT_REFUND:RD8-NO:mch_8", 300)
    assert row["platform"]["state"] == "FAILED"  # the evidence: what became of it


async def test_a_run_needs_a_file(env: ModuleEnv) -> None:
    async with env.pool.acquire() as conn, conn.transaction():
        with pytest.raises(NoStatement):
            await reconcile(conn, Source.BANK, date(2026, 3, 7), run_by=OPERATOR)


async def test_a_file_whose_lines_differ_from_its_count_is_refused_whole(env: ModuleEnv) -> None:
    from fundhub.reconciliation.statement import StatementRejected

    day = date(2026, 3, 8)
    line = StatementLine(2, *_payment("ORDZ1"))
    st = statement(Source.WECHATPAY, day, [line])
    broken = replace(st, totals=replace(st.totals, count=2))
    before = await _table_counts(env.pool)
    with pytest.raises(StatementRejected):
        await load_and_run(env.pool, broken)
    assert await _table_counts(env.pool) == before
    assert ClosingBalance  # imported for the bank test's types


def _payment(ref: str) -> tuple[Any, ...]:
    from fundhub.reconciliation.statement import LineKind

    return (LineKind.PAYMENT, ref, "42" + ref, 100, 1, "SUCCESS", at(date(2026, 3, 8), 10))


@pytest.mark.parametrize("source", [Source.BANK, Source.WECHATPAY])
async def test_a_runs_scans_of_the_day_read_indexes_not_whole_tables(
    env: ModuleEnv, source: Source
) -> None:
    """The platform's side of a run (each branch one table by its time column, one day) has an
    index to read: with sequential scans priced out, each table of records is read through an
    index condition (a table without a usable index is read whole all the same: this fails,
    as it did before migration 0031)."""
    day = date(2026, 3, 3)
    start = at(day, 0)
    sql = f"EXPLAIN SELECT $1::bigint, e.* FROM ({_expected_sql(source, RunPolicy())}) AS e"
    async with env.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(sql, 0, source.value, day, start, start + timedelta(days=1))
        )
    records = (
        {"bank_transfer_records", "payouts", "settlements", "order_refund_debits"}
        if source is Source.BANK
        else {"orders", "order_refunds"}
    )
    lines = plan.splitlines()
    scans = [
        (table, lines[i + 1].strip() if i + 1 < len(lines) else "")
        for i, line in enumerate(lines)
        for table in records
        if "Scan" in line and f" on {table} " in line
    ]
    assert {table for table, _ in scans} == records, plan
    # Each read bounded by its index's condition (a sequential scan, or a whole index read,
    # has none: only a filter).
    unbounded = [t for t, after in scans if not after.startswith(("Index Cond:", "Recheck Cond:"))]
    assert unbounded == [], plan
