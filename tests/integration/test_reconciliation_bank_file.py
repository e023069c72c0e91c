"""The bank's side against real Postgres, in the bank's own format: the platform's transfer
records and payouts of a day (written as their contexts write them, with their postings), the
depository's daily file made from them by the bank simulator's writer, read by the strict
parser, reconciled: every line matched and every closing balance agreed; then a file with one
difference of each kind on its own sub-account: the classes, and each balance difference
explained by them."""

from __future__ import annotations

from datetime import date

from support.env import ModuleEnv
from support.recon_world import Payout, Transfer, add_payouts, add_transfers, at

from fundhub.bank_simulator.daily_files import Discrepancy, Posting, daily_file, file_name
from fundhub.reconciliation.intake import take_file
from fundhub.reconciliation.statement import Source

DAY = date(2026, 8, 3)
ACCOUNTS = [f"62220200000080{i:02d}" for i in range(6)]


def history(transfers: list[Transfer], payouts: list[Payout]) -> list[Posting]:
    moves = [
        Posting(t.trans_time, t.account_id, "C", t.amount, "TRANSFER_IN", t.record_id,
                f"BT{t.record_id}", fee=t.fee)
        for t in transfers
    ] + [
        Posting(p.finished_at, p.account_id, "D", p.amount, "PAYOUT", p.pay_id, f"BP{p.pay_id}")
        for p in payouts
    ]  # fmt: skip
    return sorted(moves, key=lambda m: (m.at, m.serial))


async def test_the_banks_file_agrees_then_each_difference_is_classed_and_explained(
    env: ModuleEnv,
) -> None:
    a, b, c, d, e, f = ACCOUNTS
    transfers = [
        Transfer(f"TRB{i}", acct, 50_000 + i, at(DAY, 9, i), fee=5 if acct == d else 0)
        for i, acct in enumerate([a, b, c, d, e, f, a])
    ]
    payouts = [
        Payout(f"PAYB{i}", acct, 10_000 + i, at(DAY, 14, i)) for i, acct in enumerate([b, c])
    ]
    async with env.pool.acquire() as conn:
        await add_transfers(conn, transfers)
        await add_payouts(conn, payouts)
    moves = history(transfers, payouts)
    settings = env.settings
    name = file_name(env.app_id, DAY)

    clean = daily_file(moves, env.app_id, DAY, at(DAY, 23))
    first = await take_file(env.pool, Source.BANK, DAY, name, clean, by="t", settings=settings)
    assert first.run is not None
    assert first.run.counts["matched"] == 9
    assert sum(first.run.counts.values()) == 9
    states = await env.pool.fetch(
        "SELECT account, state, ledger_fen, bank_fen FROM recon_balance_checks WHERE run_id = $1",
        first.run.run_id,
    )
    assert len(states) == 6 and {r["state"] for r in states} == {"AGREED"}, states

    injected = [
        Discrepancy(kind="drop", reference="TRB0"),  # a: the bank never got it
        Discrepancy(kind="amount", reference="PAYB0", amount_fen=10_500),  # b: paid 500 more
        Discrepancy(kind="duplicate", reference="TRB2"),  # c: booked twice
        Discrepancy(kind="fee", reference="TRB3", fee_fen=9),  # d: another fee
        Discrepancy(kind="add", account=e, amount_fen=777, reference="TRB-UNKNOWN"),  # e
        Discrepancy(kind="status", reference="TRB5", status="REVERSED"),  # f
    ]
    changed = daily_file(moves, env.app_id, DAY, at(DAY, 23, 30), injected)
    second = await take_file(env.pool, Source.BANK, DAY, name, changed, by="t", settings=settings)
    run = second.run
    assert run is not None and run.superseded == first.run.run_id
    assert run.counts == {
        "matched": 5, "missing_on_platform": 1, "missing_at_channel": 1, "amount_mismatch": 1,
        "status_mismatch": 1, "duplicate": 1, "fee_difference": 1,
    }  # fmt: skip
    checks = {
        r["account"]: (r["difference"], r["explained_fen"], r["state"])
        for r in await env.pool.fetch(
            "SELECT * FROM recon_balance_checks WHERE run_id = $1", run.run_id
        )
    }
    assert checks[a] == (-50_000, -50_000, "EXPLAINED")
    assert checks[b] == (-500, -500, "EXPLAINED")
    assert checks[c] == (50_002, 50_002, "EXPLAINED")
    assert checks[d] == (0, 0, "AGREED")
    assert checks[e] == (777, 777, "EXPLAINED")
    # Booked, then reversed (by a later line, not in this file): the bank's balance still holds
    # it, while the platform's record is not the bank's word; explained by the status mismatch.
    assert checks[f] == (0, 0, "AGREED")
