"""The platform's records of a day, written straight into a test database as their contexts
write them (orders paid, refunds done, bank transfer records, payouts, the ledger's postings),
and the statements a channel or the bank would give for them: read back from those records, then
changed on purpose to inject each class of discrepancy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import asyncpg

from fundhub.common.clock import BANK_TZ
from fundhub.reconciliation.fees import channel_fee
from fundhub.reconciliation.statement import (
    ClosingBalance,
    LineKind,
    Source,
    Statement,
    StatementLine,
    Totals,
)

KEY = "ak_recon_test"
INFLOW = "sys:bank-inflow:CNY"
PAYOUTS_OUT = "sys:payouts-out:CNY"


def at(day: date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss, us), tzinfo=BANK_TZ)


@dataclass(frozen=True)
class Order:
    order_id: str
    amount: int
    channel: str = "WECHATPAY"
    state: str = "PAID"
    paid_at: datetime | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    amount: int
    state: str = "SUCCESS"
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Transfer:
    record_id: str
    account_id: str
    amount: int
    trans_time: datetime
    fee: int = 0
    state: str = "AVAILABLE"


@dataclass(frozen=True)
class Payout:
    pay_id: str
    account_id: str
    amount: int
    finished_at: datetime
    state: str = "SUCCESS"


async def add_orders(conn: asyncpg.Connection, orders: Sequence[Order]) -> None:
    await conn.executemany(
        "INSERT INTO orders (order_id, key_id, order_no, fingerprint, amount, currency, channel, "
        "app_id, description, platform_fee, state, paid_at) "
        "VALUES ($1, $2, $1, 'f', $3, 'CNY', $4, 'app', 'goods', 0, $5, $6)",
        [(o.order_id, KEY, o.amount, o.channel, o.state, o.paid_at) for o in orders],
    )


async def add_refunds(conn: asyncpg.Connection, refunds: Sequence[Refund]) -> None:
    await conn.executemany(
        "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount, "
        "allocation, state, finished_at) VALUES ($1, $2, $1, 'f', $3, ARRAY[$3]::bigint[], $4, $5)",
        [(r.refund_id, r.order_id, r.amount, r.state, r.finished_at) for r in refunds],
    )


async def ensure_account(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute(
        "INSERT INTO accounts (account_id, kind, currency) VALUES ($1, 'customer', 'CNY') "
        "ON CONFLICT DO NOTHING",
        account_id,
    )
    await conn.execute(
        "INSERT INTO account_balances (account_id, currency) VALUES ($1, 'CNY') "
        "ON CONFLICT DO NOTHING",
        account_id,
    )
    for system in (INFLOW, PAYOUTS_OUT):
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency, allow_negative) "
            "VALUES ($1, 'system', 'CNY', true) ON CONFLICT DO NOTHING",
            system,
        )


async def post(
    conn: asyncpg.Connection, account_id: str, amount: int, moment: datetime, ref: str
) -> None:
    """A balanced entry at ``moment``: ``amount`` (signed) on the account's available bucket
    against the bank's inflow (credit) or the payouts' outflow (debit)."""
    entry = str(uuid.uuid4())
    other = INFLOW if amount > 0 else PAYOUTS_OUT
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO journal_entries (entry_id, kind, ref_type, ref_id, created_at) "
            "VALUES ($1, 'test', 'recon-test', $2, $3)",
            entry,
            ref,
            moment,
        )
        await conn.executemany(
            "INSERT INTO postings (entry_id, account_id, bucket, currency, amount, created_at) "
            "VALUES ($1, $2, 'available', 'CNY', $3, $4)",
            [(entry, account_id, amount, moment), (entry, other, -amount, moment)],
        )
        await conn.execute(
            "UPDATE account_balances SET available = available + $2 WHERE account_id = $1",
            account_id,
            amount,
        )


async def add_transfers(conn: asyncpg.Connection, transfers: Sequence[Transfer]) -> None:
    for t in transfers:
        await ensure_account(conn, t.account_id)
        await conn.execute(
            "INSERT INTO bank_transfer_records (app_id, record_id, state, account_id, currency, "
            "trans_amount, channel, node_id, trans_time, channel_trade_no, in_acct_name, "
            "in_acct_no, ccy_code, fee, bind_status, deduct_status, out_acct_name, out_acct_no) "
            "VALUES ('app', $1, $2, $3, 'CNY', $4, 'ch', 'n', $5, $1, 'in', $3, '156', $6, "
            "'BOUND', 'NONE', 'out', '1')",
            t.record_id,
            t.state,
            t.account_id,
            t.amount,
            t.trans_time,
            t.fee,
        )
        await post(conn, t.account_id, t.amount, t.trans_time, t.record_id)


async def add_payouts(conn: asyncpg.Connection, payouts: Sequence[Payout]) -> None:
    for p in payouts:
        await ensure_account(conn, p.account_id)
        await conn.execute(
            "INSERT INTO payouts (pay_id, key_id, request_id, supplier_id, payer_account_id, "
            "amount, currency, payee, state, finished_at) "
            "VALUES ($1, $2, $1, 's', $3, $4, 'CNY', '{}'::jsonb, $5, $6)",
            p.pay_id,
            KEY,
            p.account_id,
            p.amount,
            p.state,
            p.finished_at,
        )
        await post(conn, p.account_id, -p.amount, p.finished_at, p.pay_id)


def _totals(lines: Sequence[StatementLine]) -> Totals:
    refunds = sum(li.amount_fen for li in lines if li.kind is LineKind.REFUND)
    return Totals(
        count=len(lines),
        amount_fen=sum(li.amount_fen for li in lines) - refunds,
        refund_fen=refunds,
        fee_fen=sum(li.fee_fen for li in lines),
    )


def statement(
    source: Source,
    day: date,
    lines: Iterable[StatementLine],
    closing: Sequence[ClosingBalance] = (),
) -> Statement:
    numbered = tuple(replace(li, line_no=i + 2) for i, li in enumerate(lines))
    return Statement(source, day, numbered, _totals(numbered), tuple(closing))


async def channel_lines(
    conn: asyncpg.Connection, source: Source, day: date, fee_ppm: int = 6000
) -> list[StatementLine]:
    """What the channel's bill for ``day`` would hold: the payments and refunds it processed."""
    channel = source.value.upper()
    start = at(day, 0)
    end = start + timedelta(days=1)
    payments = await conn.fetch(
        "SELECT order_id, amount, paid_at FROM orders WHERE channel = $1 AND paid_at >= $2 "
        "AND paid_at < $3 ORDER BY paid_at",
        channel,
        start,
        end,
    )
    refunds = await conn.fetch(
        "SELECT r.refund_id, r.amount, r.finished_at FROM order_refunds r JOIN orders o "
        "USING (order_id) WHERE o.channel = $1 AND r.state = 'SUCCESS' AND r.finished_at >= $2 "
        "AND r.finished_at < $3 ORDER BY r.finished_at",
        channel,
        start,
        end,
    )
    lines = [
        StatementLine(
            0,
            LineKind.PAYMENT,
            r["order_id"],
            "42" + r["order_id"],
            r["amount"],
            channel_fee(r["amount"], fee_ppm),
            "SUCCESS",
            r["paid_at"],
        )
        for r in payments
    ]
    lines += [
        StatementLine(
            0,
            LineKind.REFUND,
            r["refund_id"],
            "50" + r["refund_id"],
            r["amount"],
            channel_fee(r["amount"], fee_ppm),
            "REFUND",
            r["finished_at"],
        )
        for r in refunds
    ]
    return lines


async def bank_lines(conn: asyncpg.Connection, day: date) -> list[StatementLine]:
    start = at(day, 0)
    end = start + timedelta(days=1)
    credits = await conn.fetch(
        "SELECT record_id, account_id, trans_amount, coalesce(fee, 0) AS fee, trans_time "
        "FROM bank_transfer_records WHERE trans_time >= $1 AND trans_time < $2",
        start,
        end,
    )
    debits = await conn.fetch(
        "SELECT pay_id, payer_account_id, amount, finished_at FROM payouts "
        "WHERE state = 'SUCCESS' AND finished_at >= $1 AND finished_at < $2",
        start,
        end,
    )
    lines = [
        StatementLine(
            0,
            LineKind.CREDIT,
            r["record_id"],
            "B" + r["record_id"],
            r["trans_amount"],
            r["fee"],
            "SUCCESS",
            r["trans_time"],
            account=r["account_id"],
            business="TRANSFER_IN",
        )
        for r in credits
    ]
    lines += [
        StatementLine(
            0,
            LineKind.DEBIT,
            r["pay_id"],
            "B" + r["pay_id"],
            r["amount"],
            0,
            "SUCCESS",
            r["finished_at"],
            account=r["payer_account_id"],
            business="PAYOUT",
        )
        for r in debits
    ]
    return lines


async def closing_balances(
    conn: asyncpg.Connection, day: date, accounts: Sequence[str]
) -> list[ClosingBalance]:
    """The ledger's own end-of-day balances (what an agreeing bank reports)."""
    end = at(day, 0) + timedelta(days=1)
    rows = await conn.fetch(
        "SELECT a AS account, coalesce((SELECT sum(amount) FROM postings p "
        "WHERE p.account_id = a AND p.created_at < $2), 0) AS fen "
        "FROM unnest($1::text[]) AS a ORDER BY a",
        list(accounts),
        end,
    )
    return [ClosingBalance(9000 + i, r["account"], int(r["fen"])) for i, r in enumerate(rows)]
