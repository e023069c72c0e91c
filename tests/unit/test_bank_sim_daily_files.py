"""What the bank simulator books from what it processed: a finished scenario's arrivals (once
per record, however many notices) and reversals, payouts when paid (and back when returned),
completed splits per receiver; and the file of a day built from them."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from fundhub.bank_simulator.daily_files import daily_file, postings
from fundhub.bank_simulator.depository_splits import SplitDesk
from fundhub.bank_simulator.payouts_bank import PayoutBank, PayoutBehaviour
from fundhub.bank_simulator.runs import RunStatus, TransferScenarioRequest, plan_run
from fundhub.common.clock import BANK_TZ
from fundhub.payouts.bank import PayoutOrder
from fundhub.reconciliation.bank_file import parse_bank_file
from fundhub.reconciliation.statement import LineKind

AT = datetime(2026, 11, 30, 9, tzinfo=BANK_TZ)
DAY = date(2026, 11, 30)


def test_postings_follow_what_the_bank_did_and_make_a_file_the_parser_reads() -> None:
    run = plan_run(
        TransferScenarioRequest(
            count=2, accounts=["ACC1"], duplicates=3, lifecycle=True, reversal_rate=1.0, seed=1
        ),
        "S1",
    )
    run.status = RunStatus.DONE
    unfinished = plan_run(TransferScenarioRequest(count=5, accounts=["ACC1"], seed=2), "S2")
    bank = PayoutBank(PayoutBehaviour(processing_rate=0.0, seed=1))
    order = PayoutOrder("PAY1", "ACC1", 700, "CNY", "6217", "收款人", "工商银行", "http://n")
    bank.submit(order, AT + timedelta(hours=1))
    bank.return_payout("PAY1", AT + timedelta(hours=2))
    desk = SplitDesk()
    split, _ = desk.register(
        {
            "split_request_id": "SPL1", "order_no": "ORD1", "currency": "CNY", "amount": "300",
            "notify_url": "http://n",
            "receivers": [{"member_id": "M1", "member_name": "甲", "amount": "100"},
                          {"member_id": "M2", "member_name": "乙", "amount": "200"}],
        },
        AT,
    )  # fmt: skip
    desk.complete(split, AT + timedelta(hours=3))

    history = postings([run, unfinished], bank.transfers(), desk.splits.values())
    moves = [(p.business, p.reference, p.account, p.direction) for p in history]
    records = sorted({spec.record_id for phase in run.phases for spec in phase.specs})
    assert sorted(m for m in moves if m[0].startswith("TRANSFER")) == sorted(
        [("TRANSFER_IN", r, "ACC1", "C") for r in records]
        + [("TRANSFER_REVERSAL", r, "ACC1", "D") for r in records]
    )  # every record once in, once back out; the unfinished scenario not at all
    assert [m for m in moves if not m[0].startswith("TRANSFER")] == [
        ("PAYOUT", "PAY1", "ACC1", "D"),
        ("PAYOUT_RETURN", "PAY1", "ACC1", "C"),
        ("SPLIT_IN", "SPL1", "M1", "C"),
        ("SPLIT_IN", "SPL1", "M2", "C"),
    ]

    statement = parse_bank_file(daily_file(history, "APP", DAY, AT), DAY)
    closing = {b.account: b.balance_fen for b in statement.closing_balances}
    assert closing == {"ACC1": 0, "M1": 100, "M2": 200}
    assert [line.kind for line in statement.lines if line.business == "PAYOUT"] == [LineKind.DEBIT]
