"""The bank's daily file of the platform's accounts (``docs/bank-daily-files.md``), made from
what the simulated bank processed: the transfers its scenarios sent (arrivals and reversals),
the payouts it paid (and those returned), the splits it completed and the members' debits for
refunds after a split.

Every movement is a ``Posting``; a day's file holds the postings of that day (GMT+8) with each
account's running balance, one balance record per account the bank has seen so far (its
opening: everything before the day), and the trailer's control totals. Injected discrepancies
change the day's postings before the balances are computed, so the file stays consistent with
itself and differs from the platform's records exactly by what was injected.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fundhub.bank_simulator.depository_refund_debits import Debit
from fundhub.bank_simulator.depository_splits import Split
from fundhub.bank_simulator.payouts_bank import Transfer
from fundhub.bank_simulator.runs import RunStatus, ScenarioRun
from fundhub.common.clock import BANK_TZ
from fundhub.orders.refund_debits import BUSINESS_TYPE as SPLIT_REFUND
from fundhub.payouts.bank import BankStatus
from fundhub.settlement.depository import SplitStatus

Direction = Literal["C", "D"]
SEPARATOR = "|"
ENCODING = "gbk"


@dataclass(frozen=True, slots=True)
class Posting:
    """One movement of one sub-account, as the bank booked it."""

    at: datetime
    account: str
    direction: Direction
    amount: int
    business: str
    reference: str
    serial: str
    counterparty_account: str = ""
    counterparty_name: str = ""
    status: str = "SUCCESS"
    fee: int = 0
    remark: str = ""

    @property
    def moved(self) -> int:
        return self.amount if self.direction == "C" else -self.amount


class Discrepancy(BaseModel):
    """One injected difference (camelCase): ``reference`` is the line's business reference
    (a transfer's record id, a payout's ``bank_request_id``, a split's ``split_request_id``);
    ``account`` settles which line when several share it (a split's receivers)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    kind: Literal["drop", "add", "amount", "status", "duplicate", "fee"]
    reference: str | None = Field(default=None, min_length=1, max_length=64)
    account: str | None = Field(default=None, min_length=1, max_length=34)
    amount_fen: int | None = Field(default=None, ge=1, le=10**14)
    status: Literal["SUCCESS", "REVERSED"] | None = None
    fee_fen: int | None = Field(default=None, ge=0, le=10**14)
    direction: Direction = "C"
    business: str = Field(default="TRANSFER_IN", pattern=r"^[A-Z_]{1,32}$")


def _serial(kind: str, key: str) -> str:
    digest = hashlib.sha256(f"{kind}:{key}".encode()).digest()
    return f"{kind}{int.from_bytes(digest[:8], 'big') % 10**18:018d}"


def postings(
    runs: Iterable[ScenarioRun],
    transfers: Iterable[Transfer],
    splits: Iterable[Split],
    debits: Iterable[Debit] = (),
) -> list[Posting]:
    """Every movement the simulated bank made, in time order (``debits``: the completed ones)."""
    found: list[Posting] = []
    for run in runs:
        if run.status is not RunStatus.DONE:
            continue  # a scenario still sending (or stopped) has not fully happened
        credited: set[str] = set()
        reversed_: set[str] = set()
        for phase in run.phases:
            for spec in phase.specs:
                at = spec.trans_time or run.created_at
                moves: list[tuple[Direction, str, str]] = []
                if spec.record_id not in credited:
                    credited.add(spec.record_id)
                    moves.append(("C", "TRANSFER_IN", _serial("BT", spec.record_id)))
                if spec.reverse_flag == "1" and spec.record_id not in reversed_:
                    reversed_.add(spec.record_id)
                    moves.append(("D", "TRANSFER_REVERSAL", _serial("BR", spec.record_id)))
                for direction, business, serial in moves:
                    found.append(
                        Posting(
                            at,
                            spec.in_acct_no,
                            direction,
                            spec.trans_amount,
                            business,
                            spec.record_id,
                            serial,
                            counterparty_account=spec.out_acct_no,
                            counterparty_name=spec.out_acct_name,
                        )
                    )
    for transfer in transfers:
        order = transfer.order
        if transfer.paid_at is None:
            continue
        paid: list[tuple[datetime, Direction, str, str]] = [
            (transfer.paid_at, "D", "PAYOUT", transfer.bank_txn_id)
        ]
        if transfer.status is BankStatus.RETURNED and transfer.finished_at is not None:
            paid.append((transfer.finished_at, "C", "PAYOUT_RETURN", transfer.bank_txn_id + "R"))
        for at, direction, business, serial in paid:
            found.append(
                Posting(
                    at,
                    order.payer_account,
                    direction,
                    order.amount,
                    business,
                    order.bank_request_id,
                    serial,
                    counterparty_account=order.payee_account_no,
                    counterparty_name=order.payee_account_name,
                )
            )
    for split in splits:
        if split.status is not SplitStatus.SUCCESS or split.finished_at is None:
            continue
        for number, receiver in enumerate(split.wire["receivers"], start=1):
            found.append(
                Posting(
                    split.finished_at,
                    str(receiver["member_id"]),
                    "C",
                    int(receiver["amount"]),
                    "SPLIT_IN",
                    split.split_request_id,
                    f"{split.bank_split_id}{number:02d}",
                    counterparty_account=str(split.wire["order_no"]),
                    counterparty_name=str(receiver["member_name"]),
                )
            )
    for debit in debits:
        if debit.finished_at is None:
            continue
        for number, (member, amount) in enumerate(debit.members(), start=1):
            found.append(
                Posting(
                    debit.finished_at,
                    member,
                    "D",
                    amount,
                    SPLIT_REFUND,
                    debit.refund_request_id,
                    f"{debit.bank_refund_id}{number:02d}",
                    counterparty_account=str(debit.wire["order_no"]),
                )
            )
    found.sort(key=lambda posting: (posting.at, posting.serial))
    return found


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), BANK_TZ)
    return start, start + timedelta(days=1)


def inject(
    day_postings: Sequence[Posting], wanted: Sequence[Discrepancy], day: date
) -> list[Posting]:
    """The day's postings with the discrepancies applied in order; ValueError names the one
    that cannot be applied."""
    result = list(day_postings)
    for number, discrepancy in enumerate(wanted, start=1):
        if discrepancy.kind == "add":
            if discrepancy.account is None:
                raise ValueError(f"discrepancy {number} (add): account is required")
            reference = discrepancy.reference or f"SIMADD{secrets.token_hex(6)}"
            result.append(
                Posting(
                    day_bounds(day)[0] + timedelta(hours=12),
                    discrepancy.account,
                    discrepancy.direction,
                    discrepancy.amount_fen or 100,
                    discrepancy.business,
                    reference,
                    _serial("BA", reference),
                    fee=discrepancy.fee_fen or 0,
                )
            )
            continue
        index = next(
            (
                i
                for i, posting in enumerate(result)
                if posting.reference == discrepancy.reference
                and discrepancy.account in (None, posting.account)
            ),
            None,
        )
        if index is None:
            raise ValueError(f"discrepancy {number}: no line {discrepancy.reference} that day")
        posting = result[index]
        if discrepancy.kind == "drop":
            del result[index]
        elif discrepancy.kind == "duplicate":
            result.insert(index + 1, posting)
        elif discrepancy.kind == "amount":
            if discrepancy.amount_fen is None:
                raise ValueError(f"discrepancy {number} (amount): amountFen is required")
            result[index] = replace(posting, amount=discrepancy.amount_fen)
        elif discrepancy.kind == "fee":
            if discrepancy.fee_fen is None:
                raise ValueError(f"discrepancy {number} (fee): feeFen is required")
            result[index] = replace(posting, fee=discrepancy.fee_fen)
        else:
            if discrepancy.status is None:
                raise ValueError(f"discrepancy {number} (status): status is required")
            result[index] = replace(posting, status=discrepancy.status)
    return result


def _text(value: str) -> str:
    """No value may hold the separator or end the record."""
    return value.replace(SEPARATOR, "/").replace("\r", " ").replace("\n", " ")


def file_name(app_id: str, day: date) -> str:
    return f"FUNDS_{app_id}_{day:%Y%m%d}.txt"


def daily_file(
    history: Sequence[Posting],
    app_id: str,
    day: date,
    created_at: datetime,
    discrepancies: Sequence[Discrepancy] = (),
) -> bytes:
    """The file of ``day``: ``history`` is every posting (those before the day give the
    openings), the discrepancies change the day's own."""
    start, end = day_bounds(day)
    balances: dict[str, int] = {}
    for posting in history:
        if posting.at >= start:
            break
        balances[posting.account] = balances.get(posting.account, 0) + posting.moved
    today = [posting for posting in history if start <= posting.at < end]
    today = inject(today, discrepancies, day)
    opening = dict(balances)
    sums: dict[str, list[int]] = {}
    out = [
        SEPARATOR.join(
            [
                "H",
                "FUNDS",
                app_id,
                f"{day:%Y%m%d}",
                created_at.astimezone(BANK_TZ).strftime("%Y%m%d%H%M%S"),
                "1.0",
            ]
        )
    ]
    credit_count = credit_sum = debit_count = debit_sum = fee_sum = 0
    for seq, posting in enumerate(today, start=1):
        balance = balances.get(posting.account, 0) + posting.moved
        balances[posting.account] = balance
        opening.setdefault(posting.account, balance - posting.moved)
        account_sums = sums.setdefault(posting.account, [0, 0, 0, 0])
        if posting.direction == "C":
            credit_count += 1
            credit_sum += posting.amount
            account_sums[0] += 1
            account_sums[1] += posting.amount
        else:
            debit_count += 1
            debit_sum += posting.amount
            account_sums[2] += 1
            account_sums[3] += posting.amount
        fee_sum += posting.fee
        out.append(
            SEPARATOR.join(
                [
                    "D",
                    str(seq),
                    posting.serial,
                    _text(posting.account),
                    posting.direction,
                    str(posting.amount),
                    str(posting.fee),
                    str(balance),
                    "CNY",
                    posting.business,
                    _text(posting.reference),
                    _text(posting.counterparty_account),
                    _text(posting.counterparty_name),
                    posting.at.astimezone(BANK_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                    posting.status,
                    _text(posting.remark),
                ]
            )
        )
    accounts = sorted(balances)
    for seq, account in enumerate(accounts, start=1):
        account_sums = sums.get(account, [0, 0, 0, 0])
        out.append(
            SEPARATOR.join(
                [
                    "B",
                    str(seq),
                    _text(account),
                    "CNY",
                    str(opening[account]),
                    str(balances[account]),
                    *map(str, account_sums),
                ]
            )
        )
    trailer = [len(today), credit_count, credit_sum, debit_count, debit_sum, fee_sum]
    trailer += [len(accounts), sum(balances.values())]
    out.append(SEPARATOR.join(["T", *map(str, trailer)]))
    return ("\r\n".join(out) + "\r\n").encode(ENCODING, "replace")
