"""The import itself: read, plan against what is held, write, register, summarise.

Merchants: the new ones are written in one transaction (with the operator's audit entry), then
registered with the depository as existing accounts, ``concurrency`` requests at a time, each
under the request id stored with it; the answers are settled in batches as they come. A bank
that does not answer leaves those requests as they are: the same file run again sends them
again (same ids, the bank deduplicates), and the worker's poller would too, later.

Balances: everything in one transaction (entries, balances, the record of each opening balance,
the audit entry), so a file is booked whole or not at all.

A refused file (``files.FileRefused``) is refused before any write: nothing changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from fundhub.common.db import Connection, Pool, write_together
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import Balance, apply_entry, new_entry_id
from fundhub.merchants import existing
from fundhub.merchants.depository import (
    DepositoryAnswer,
    DepositoryRefused,
    DepositoryUnavailable,
    MemberDepository,
    existing_account,
)
from fundhub.merchants.ids import new_merchant_id, new_request_id
from fundhub.merchants.states import MerchantState, ResultStatus
from fundhub.reconciliation.initialisation import store
from fundhub.reconciliation.initialisation.files import (
    MerchantRow,
    read_balances,
    read_merchants,
)
from fundhub.reconciliation.initialisation.plan import (
    BalanceTarget,
    Conflict,
    HeldMerchant,
    equity_account,
    plan_balances,
    plan_merchants,
)

log = structlog.get_logger(__name__)

CHUNK = 2_000  # rows per statement
SETTLE_BATCH = 500  # answers per transaction
# Refusals that prove the bank made nothing of the request (as ``merchants.submitter``).
_NOTHING_MADE = frozenset({400, 422})


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...

    def advance(self, done: int = 1) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, done: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


# Writes the operator's audit entry with these params, in the caller's transaction.
Audit = Callable[[Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    line: int
    merchant_no: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "merchantNo": self.merchant_no, "message": self.message}


@dataclass
class MerchantSummary:
    file: str
    sha256: str
    rows: int
    dry_run: bool
    created: int = 0
    unchanged: int = 0
    resumed: int = 0
    registered: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    rejected: list[Outcome] = field(default_factory=list)
    awaiting_bank: int = 0
    unanswered: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds from the start

    @property
    def complete(self) -> bool:
        return not (self.conflicts or self.rejected or self.awaiting_bank or self.unanswered)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "unchanged": self.unchanged,
            "resumed": self.resumed,
            "registered": self.registered,
            "conflicts": [c.to_json() for c in self.conflicts],
            "rejected": [r.to_json() for r in self.rejected],
            "awaitingBank": self.awaiting_bank,
            "unanswered": [u.to_json() for u in self.unanswered],
            "seconds": round(self.seconds, 3),
            "secondsAt": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class BalanceSummary:
    file: str
    sha256: str
    rows: int
    amount_fen: int  # the file's control sum
    dry_run: bool
    booked: int = 0
    booked_fen: int = 0
    unchanged: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    equity_account: str = ""
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.conflicts

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "amount": self.amount_fen,
            "booked": self.booked,
            "bookedAmount": self.booked_fen,
            "unchanged": self.unchanged,
            "conflicts": [c.to_json() for c in self.conflicts],
            "equityAccount": self.equity_account,
            "seconds": round(self.seconds, 3),
        }


def _chunks(items: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _OwnerLock:
    """The owner's import lock, on a connection held for the whole import."""

    def __init__(self, pool: Pool, owner_key_id: str) -> None:
        self._pool = pool
        self._owner = owner_key_id
        self._conn: Any = None

    async def __aenter__(self) -> Connection:
        self._conn = await self._pool.acquire()
        try:
            await store.lock_owner(self._conn, self._owner)
        except BaseException:
            await self._pool.release(self._conn)
            raise
        conn: Connection = self._conn
        return conn

    async def __aexit__(self, *exc: object) -> None:
        try:
            await store.unlock_owner(self._conn, self._owner)
        finally:
            await self._pool.release(self._conn)


# --- merchants ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Registering:
    row: MerchantRow
    merchant_id: str
    request_id: str
    materials: dict[str, Any]  # version 1, normalised: sent as the API's OPEN sends it


async def import_merchants(
    pool: Pool,
    depository: MemberDepository,
    *,
    owner_key_id: str,
    data: bytes,
    file_name: str,
    notify_url: str,
    bank_app_id: str,
    dry_run: bool = False,
    concurrency: int = 32,
    progress: Progress | None = None,
    audit: Audit | None = None,
) -> MerchantSummary:
    started = time.perf_counter()
    shown = progress or NoProgress()
    file = read_merchants(data)  # FileRefused: nothing read is used
    summary = MerchantSummary(file_name, hashlib.sha256(data).hexdigest(), len(file.rows), dry_run)
    summary.timings["read"] = time.perf_counter() - started
    async with _OwnerLock(pool, owner_key_id) as conn:
        held = {
            r["merchant_no"]: HeldMerchant(
                r["merchant_id"],
                r["fingerprint"],
                MerchantState(r["state"]),
                r["register_request"],
            )
            for r in await existing.held(conn, owner_key_id, [row.merchant_no for row in file.rows])
        }
        plan = plan_merchants(file, held)
        summary.timings["planned"] = time.perf_counter() - started
        summary.unchanged = len(plan.unchanged)
        summary.conflicts = list(plan.conflicts)
        summary.created = len(plan.create)
        summary.resumed = len(plan.resume)
        if dry_run:
            summary.seconds = time.perf_counter() - started
            return summary
        new = [
            existing.Existing.of(new_merchant_id(), new_request_id(), row.registration)
            for row in plan.create
        ]
        shown.start("merchants written", len(new))
        async with conn.transaction():
            for chunk in _chunks(new):
                await existing.insert(conn, owner_key_id, chunk, bank_app_id)
                shown.advance(len(chunk))
            if audit is not None and new:  # a run that creates nothing changes nothing
                await audit(conn, _merchant_params(summary, owner_key_id))
        shown.finish()
        registering = [
            _Registering(row, m.merchant_id, m.request_id, m.materials)
            for row, m in zip(plan.create, new, strict=True)
        ]
        registering += [
            _Registering(row, merchant_id, request_id, row.registration.materials().normalised())
            for row, merchant_id, request_id in plan.resume
        ]
        summary.timings["written"] = time.perf_counter() - started
        await _register(pool, depository, registering, notify_url, concurrency, shown, summary)
    summary.seconds = time.perf_counter() - started
    log.info(
        "init_merchants_imported",
        **{k: v for k, v in summary.to_json().items() if isinstance(v, int)},
    )
    return summary


async def _register(
    pool: Pool,
    depository: MemberDepository,
    registering: Sequence[_Registering],
    notify_url: str,
    concurrency: int,
    shown: Progress,
    summary: MerchantSummary,
) -> None:
    """Send every REGISTER, at most ``concurrency`` at once; settle the answers in batches."""
    if not registering:
        return
    slots = asyncio.Semaphore(max(1, concurrency))
    answers: asyncio.Queue[DepositoryAnswer | None] = asyncio.Queue()
    by_request = {r.request_id: r for r in registering}
    shown.start("registered with the depository", len(registering))

    async def send(item: _Registering) -> None:
        async with slots:
            request = existing_account(
                item.request_id, item.merchant_id, notify_url, item.materials
            )
            try:
                answer = await depository.submit(request)
            except DepositoryUnavailable as exc:
                summary.unanswered.append(Outcome(item.row.line, item.row.merchant_no, str(exc)))
                shown.advance()
                return
            except DepositoryRefused as exc:
                if exc.status_code not in _NOTHING_MADE:
                    summary.unanswered.append(
                        Outcome(item.row.line, item.row.merchant_no, str(exc))
                    )
                    shown.advance()
                    return
                reason = f"the depository refused the request: {exc.reason}"
                answer = DepositoryAnswer(item.request_id, ResultStatus.FAILED, reason)
        await answers.put(answer)

    async def settle() -> None:
        done = False
        while not done:
            batch: list[DepositoryAnswer] = []
            first = await answers.get()
            if first is None:
                return
            batch.append(first)
            while len(batch) < SETTLE_BATCH and not answers.empty():
                item = answers.get_nowait()
                if item is None:
                    done = True
                    break
                batch.append(item)
            async with pool.acquire() as conn, conn.transaction():
                tally = await existing.settle_answers(conn, batch)
            summary.awaiting_bank += tally["processing"]
            for answer in batch:
                item_of = by_request[answer.request_id]
                if answer.status is ResultStatus.SUCCESS:
                    summary.registered += 1
                elif answer.status is ResultStatus.FAILED:
                    summary.rejected.append(
                        Outcome(
                            item_of.row.line, item_of.row.merchant_no, answer.reason or "refused"
                        )
                    )
            shown.advance(len(batch))

    settler = asyncio.create_task(settle(), name="init-settle")
    try:
        await asyncio.gather(*(send(item) for item in registering))
    finally:
        await answers.put(None)
        await settler
        shown.finish()
    summary.unanswered.sort(key=lambda o: o.line)
    summary.rejected.sort(key=lambda o: o.line)


def _merchant_params(summary: MerchantSummary, owner_key_id: str) -> dict[str, Any]:
    return {
        "owner": owner_key_id,
        "file": summary.file,
        "sha256": summary.sha256,
        "rows": summary.rows,
        "created": summary.created,
        "unchanged": summary.unchanged,
        "resumed": summary.resumed,
        "conflicts": len(summary.conflicts),
    }


# --- balances -----------------------------------------------------------------------------------


async def import_balances(
    pool: Pool,
    *,
    owner_key_id: str,
    data: bytes,
    file_name: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    audit: Audit | None = None,
) -> BalanceSummary:
    started = time.perf_counter()
    shown = progress or NoProgress()
    file = read_balances(data)
    summary = BalanceSummary(
        file_name, hashlib.sha256(data).hexdigest(), len(file.rows), file.amount_fen, dry_run
    )
    async with _OwnerLock(pool, owner_key_id) as conn:
        merchant_nos = [row.merchant_no for row in file.rows]
        targets = {
            r["merchant_no"]: BalanceTarget(
                r["merchant_id"], r["account_id"], MerchantState(r["state"]), r["currency"].strip()
            )
            for r in await existing.held(conn, owner_key_id, merchant_nos)
        }
        booked_before = await store.posted(conn, owner_key_id, merchant_nos)
        moved = await store.accounts_with_postings(conn, [t.account_id for t in targets.values()])
        plan = plan_balances(
            file, targets, booked_before, [new_entry_id() for _ in file.rows], moved
        )  # FileRefused: an unknown merchant, or one that holds no funds
        summary.unchanged = len(plan.unchanged)
        summary.conflicts = list(plan.conflicts)
        summary.booked = len(plan.post)
        summary.booked_fen = plan.amount_fen
        summary.equity_account = equity_account("CNY")
        if dry_run or not plan.post:
            summary.seconds = time.perf_counter() - started
            return summary
        shown.start("opening balances booked", len(plan.post))
        async with conn.transaction():
            currencies = {o.row.currency for o in plan.post}
            accounts = sorted({o.target.account_id for o in plan.post})
            await ledger_store.ensure_accounts(
                conn,
                [(o.target.account_id, o.target.currency, None) for o in plan.post],
                [equity_account(c) for c in currencies],
            )
            balances = await ledger_store.lock_balances(conn, accounts)
            for chunk in _chunks(plan.post):
                entries = [o.entry for o in chunk if o.entry is not None]
                changed: dict[str, Balance] = {}
                for entry in entries:
                    touched = {
                        p.account_id: balances[p.account_id]
                        for p in entry.postings
                        if p.account_id in balances
                    }
                    after = apply_entry(touched, entry)  # never below zero (InsufficientFunds)
                    balances.update(after)
                    changed.update(after)
                await write_together(
                    conn,
                    [
                        *ledger_store.entry_writes(entries, [None] * len(entries)),
                        *ledger_store.balance_writes(changed.values()),
                        *store.opening_writes(owner_key_id, chunk, summary.sha256),
                    ],
                )
                shown.advance(len(chunk))
            if audit is not None:
                await audit(conn, _balance_params(summary, owner_key_id))
        shown.finish()
    summary.seconds = time.perf_counter() - started
    log.info(
        "init_balances_imported",
        rows=summary.rows,
        booked=summary.booked,
        unchanged=summary.unchanged,
        conflicts=len(summary.conflicts),
    )
    return summary


def _balance_params(summary: BalanceSummary, owner_key_id: str) -> dict[str, Any]:
    return {
        "owner": owner_key_id,
        "file": summary.file,
        "sha256": summary.sha256,
        "rows": summary.rows,
        "amount": summary.amount_fen,
        "booked": summary.booked,
        "bookedAmount": summary.booked_fen,
        "unchanged": summary.unchanged,
        "conflicts": len(summary.conflicts),
    }
