"""A run: the current file of a source and day matched against the platform's records of that
day, in set-based SQL inside one transaction (no per-row round trip).

- The platform's side (``_expected``): what it says happened that day (orders' payments and
  refunds for a channel; the bank transfer records, paid payouts (withdrawals included), the
  settlements' splits and the members' debits for refunds after a split, for the bank), plus
  what the previous day's run handed over from just before midnight.
- The source's side: the file's lines, plus the lines the previous day handed over. A
  (kind, reference) the source reports more than once is a duplicate group (found by one hash
  aggregate); its first line is matched as any other, the others are duplicates.
- One full join of the two sides (hash join, one pass over each) keeps only the pairs that do
  not agree, and the items with one side: a few thousand rows out of a million. The records the
  unpaired lines name that are not the day's (an order never paid, one paid on another day) are
  then looked up by key, so a status mismatch is told from a missing record, and a record just
  after midnight from one the platform lacks. Every kept row is classified by one CASE.
- What matched is counted without being written: the file's count and sum (kept at import)
  less the lines that did not match.
- Discrepancies (with both sides as evidence) and the near-midnight items handed to the next
  day's run are written from the kept rows.
- For the bank: each sub-account's closing balance against the ledger's at the day's end, each
  difference explained by what the day's discrepancies move on that account, or not.
- A refund after settlement is the platform's record of a member debit from the moment it took
  the shares (the ledger moved then), whatever the depository has done with it since: a debit
  the bank has not booked (still under way, failed, or refused) is ``missing_at_channel``, with
  its state as evidence, and explains the member's balance; one completed just after midnight is
  handed to the next day like a payment.

Redoing a day's run (a corrected file, or on demand) supersedes the current run: both are kept,
the superseded run's hand-overs to the next day are withdrawn and written anew.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import structlog

from fundhub.common.clock import utcnow
from fundhub.common.db import Connection, json_text
from fundhub.reconciliation.business_day import DEFAULT_CARRY_WINDOW, DayWindow, day_window
from fundhub.reconciliation.classes import MatchClass
from fundhub.reconciliation.fees import DEFAULT_CHANNEL_FEE_PPM, fee_sql
from fundhub.reconciliation.outcomes import (
    ORDER_STATES,
    PAYOUT_STATES,
    REFUND_STATES,
    TRANSFER_STATES,
    platform_case,
)
from fundhub.reconciliation.statement import Source
from fundhub.reconciliation.store import lock_day

log = structlog.get_logger(__name__)

CHANNEL_OF = {Source.WECHATPAY: "WECHATPAY", Source.ALIPAY: "ALIPAY"}
# The depository member a split credits: the merchant, or the platform for its fee (as
# settlement's scheduler names them in the instruction; the bank's line carries it).
PLATFORM_MEMBER = "platform"


class NoStatement(LookupError):
    """No file was imported for that source and day."""


@dataclass(frozen=True, slots=True)
class RunPolicy:
    fee_ppm: dict[Source, int] = field(
        default_factory=lambda: {
            Source.WECHATPAY: DEFAULT_CHANNEL_FEE_PPM,
            Source.ALIPAY: DEFAULT_CHANNEL_FEE_PPM,
        }
    )
    carry_window: timedelta = DEFAULT_CARRY_WINDOW
    # The run's hash joins and sort of a million lines fit in memory with this much per node
    # (set for the run's transaction only); at the default 4 MB they spill to disk in batches.
    work_mem_mb: int = 64


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    source: Source
    day: date
    file_id: int
    counts: dict[str, int]
    sums: dict[str, int]
    line_count: int
    record_count: int
    carried_in: int
    carried_out: int
    unexplained: int
    superseded: str | None
    step_seconds: dict[str, float] = field(default_factory=dict)
    # What the day hands to the next came out other than before this run.
    handed_over_changed: bool = False
    # The following days' runs redone because of it, in order.
    redone_onward: tuple[str, ...] = ()


def new_run_id(source: Source, day: date) -> str:
    return f"RCN{day:%Y%m%d}{source.value[0].upper()}{secrets.token_hex(5)}"


async def reconcile(
    conn: Connection,
    source: Source,
    day: date,
    *,
    run_by: str,
    policy: RunPolicy | None = None,
) -> RunResult:
    """Run (or redo) the day's reconciliation of ``source``; inside the caller's transaction.

    A run rewrites what the day hands over to the next. When that changed and the next day has
    been run already, its run read the old hand-overs: it is redone too, and so on while each
    redo changes what it hands on (a day whose hand-overs came out the same stops the chain)."""
    policy = policy or RunPolicy()
    run = await _reconcile_day(conn, source, day, run_by=run_by, policy=policy)
    onward: list[str] = []
    changed = run.handed_over_changed
    following = day + timedelta(days=1)
    while changed and await _has_current_run(conn, source, following):
        redone = await _reconcile_day(conn, source, following, run_by=run_by, policy=policy)
        log.info(
            "recon_run_redone_onward",
            source=source.value,
            day=following.isoformat(),
            run_id=redone.run_id,
            because_of=run.run_id,
        )
        onward.append(redone.run_id)
        changed = redone.handed_over_changed
        following += timedelta(days=1)
    return replace(run, redone_onward=tuple(onward))


async def _has_current_run(conn: Connection, source: Source, day: date) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM recon_runs WHERE source = $1 AND day = $2 "
        "AND state = 'CURRENT')",
        source.value,
        day,
    )
    return found


# What a day hands to the next, as content (not which file or line it came from): equal
# before and after a run, the next day's run read the same and stands.
_HANDED_OVER = """
SELECT md5(coalesce(string_agg(
    concat_ws('|', side, kind, reference, amount_fen, fee_fen, outcome, occurred_at, account,
              record::text),
    E'\n' ORDER BY side, kind, reference, amount_fen, occurred_at), ''))
FROM recon_carry WHERE source = $1 AND for_day = $2
"""


async def _reconcile_day(
    conn: Connection, source: Source, day: date, *, run_by: str, policy: RunPolicy
) -> RunResult:
    window = day_window(day, policy.carry_window)
    started = utcnow()
    await lock_day(conn, source, day)
    await conn.execute(f"SET LOCAL work_mem = '{int(policy.work_mem_mb)}MB'")
    # Every current file of the day (one per merchant: several apps, several bills).
    file_row = await conn.fetchrow(
        "SELECT array_agg(file_id ORDER BY file_id) AS file_ids, sum(line_count) AS line_count, "
        "sum(lines_fen) AS lines_fen FROM recon_files "
        "WHERE source = $1 AND day = $2 AND superseded_by IS NULL",
        source.value,
        day,
    )
    if file_row is None or file_row["file_ids"] is None:
        raise NoStatement(f"no {source.value} statement for {day.isoformat()}")
    file_ids: list[int] = list(file_row["file_ids"])
    file_id = file_ids[-1]
    run_id = new_run_id(source, day)
    handed_before = await conn.fetchval(_HANDED_OVER, source.value, window.next_day)
    previous = await conn.fetchval(
        "UPDATE recon_runs SET state = 'SUPERSEDED', superseded_by = $3 "
        "WHERE source = $1 AND day = $2 AND state = 'CURRENT' RETURNING run_id",
        source.value,
        day,
        run_id,
    )
    if previous is not None:
        await conn.execute("DELETE FROM recon_carry WHERE from_run = $1", previous)

    steps = _Steps()
    await conn.execute(_TEMP_TABLES)
    carried = await conn.fetchrow(_CARRIED_IN, source.value, day)
    assert carried is not None
    await conn.execute(_DUPLICATE_GROUPS, file_ids, source.value, day)
    await conn.execute("ANALYZE rc_dups")
    await conn.execute(_DUPLICATE_LINES, file_ids, source.value, day)
    steps.mark("duplicates")
    await conn.execute(
        _unpaired_sql(source, policy), file_ids, source.value, day, window.start, window.end
    )
    steps.mark("join")
    await conn.execute(_REPEATS)
    await conn.execute("ANALYZE rc_items")
    steps.mark("repeats")
    await conn.execute(_lookup_sql(source, policy))
    await conn.execute(_CLASSIFY, window.carry_from, window.end, window.end + policy.carry_window)
    steps.mark("lookup")

    rows = await conn.fetch(
        "SELECT cls, count(*) AS n, coalesce(sum(coalesce(l_amount, e_amount)), 0) AS s, "
        "count(l_amount) AS with_line, coalesce(sum(l_amount), 0) AS line_fen, "
        "count(*) FILTER (WHERE e_amount IS NOT NULL AND coalesce(l_rn, 1) = 1) AS records "
        "FROM rc_items GROUP BY cls"
    )
    line_count = int(file_row["line_count"])
    all_lines = line_count + int(carried["lines"])
    all_fen = int(file_row["lines_fen"]) + int(carried["lines_fen"])
    by_class = {r["cls"]: (int(r["n"]), int(r["s"])) for r in rows}
    paired = all_lines - sum(int(r["with_line"]) for r in rows)
    paired_fen = all_fen - sum(int(r["line_fen"]) for r in rows)
    matched = by_class.get(MatchClass.MATCHED.value, (0, 0))
    by_class[MatchClass.MATCHED.value] = (matched[0] + paired, matched[1] + paired_fen)
    counts = {c.value: by_class.get(c.value, (0, 0))[0] for c in MatchClass}
    sums = {c.value: by_class.get(c.value, (0, 0))[1] for c in MatchClass}
    carried_out = sum(n for cls, (n, _) in by_class.items() if cls.startswith("carry_"))
    record_count = paired + sum(int(r["records"]) for r in rows)
    carried_in = int(carried["lines"]) + int(carried["records"])

    await conn.execute(
        "INSERT INTO recon_runs (run_id, source, day, file_id, counts, sums, line_count, "
        "record_count, carried_in, carried_out, started_at, run_by, file_ids) "
        "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9, $10, $11, $12, "
        "$13)",
        run_id,
        source.value,
        day,
        file_id,
        json_text(counts),
        json_text(sums),
        line_count,
        record_count,
        carried_in,
        carried_out,
        started,
        run_by,
        file_ids,
    )
    await conn.execute(_DISCREPANCIES, run_id)
    await conn.execute(_CARRY_OUT, run_id, source.value, window.next_day)
    handed_after = await conn.fetchval(_HANDED_OVER, source.value, window.next_day)
    steps.mark("write")
    unexplained = 0
    if source is Source.BANK:
        unexplained = await _check_balances(conn, run_id, file_ids, window)
        await conn.execute(
            "UPDATE recon_runs SET unexplained = $2 WHERE run_id = $1", run_id, unexplained
        )
    await conn.execute("DROP TABLE rc_dups, rc_dup_lines, rc_items")
    steps.mark("balances")
    return RunResult(
        run_id=run_id,
        source=source,
        day=day,
        file_id=file_id,
        counts=counts,
        sums=sums,
        line_count=line_count,
        record_count=record_count,
        carried_in=carried_in,
        carried_out=carried_out,
        unexplained=unexplained,
        superseded=previous,
        step_seconds=steps.seconds,
        handed_over_changed=handed_after != handed_before,
    )


class _Steps:
    """Where a run's time goes (the benchmark reports it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


_TEMP_TABLES = """
CREATE TEMP TABLE rc_dups (kind text NOT NULL, reference text NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE rc_dup_lines (
    file_id bigint, line_no integer, kind text NOT NULL, reference text NOT NULL,
    source_ref text, amount_fen bigint NOT NULL, fee_fen bigint NOT NULL, status text,
    outcome text NOT NULL, occurred_at timestamptz NOT NULL, account text,
    carried boolean NOT NULL, rn bigint NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE rc_items (
    cls text, kind text NOT NULL, reference text NOT NULL, account text,
    l_file_id bigint, l_line_no integer, l_source_ref text, l_amount bigint, l_fee bigint,
    l_status text, l_outcome text, l_at timestamptz, l_carried boolean, l_rn bigint,
    e_amount bigint, e_fee bigint, e_state text, e_outcome text, e_at timestamptz,
    e_account text, e_origin text
) ON COMMIT DROP;
"""

# The lines handed over by the previous day's run, and its records: $1 source, $2 day.
_CARRIED_IN = """
SELECT count(*) FILTER (WHERE side = 'statement') AS lines,
       coalesce(sum(amount_fen) FILTER (WHERE side = 'statement'), 0) AS lines_fen,
       count(*) FILTER (WHERE side = 'platform') AS records
FROM recon_carry WHERE source = $1 AND for_day = $2
"""

# Both sides' lines: $1 the day's files, $2 source, $3 day (its hand-overs).
_ALL_LINES = """
    SELECT file_id, line_no, kind, match_ref AS reference, source_ref, amount_fen, fee_fen,
           status, outcome, occurred_at, account, false AS carried
    FROM recon_lines WHERE file_id = ANY($1::bigint[])
    UNION ALL
    SELECT line_file_id, line_no, kind, reference, record->>'sourceRef', amount_fen, fee_fen,
           record->>'status', outcome, occurred_at, account, true
    FROM recon_carry WHERE source = $2 AND for_day = $3 AND side = 'statement'
"""

_DUPLICATE_GROUPS = f"""
INSERT INTO rc_dups
SELECT kind, reference FROM ({_ALL_LINES}) AS l GROUP BY kind, reference HAVING count(*) > 1;
"""
# Every line of the duplicate groups, numbered in the group (a hand-over first, then by file
# and line): one scan, then the join and the repeats read this small table.
_DUPLICATE_LINES = f"""
INSERT INTO rc_dup_lines
SELECT a.*, row_number() OVER (
    PARTITION BY a.kind, a.reference ORDER BY a.carried DESC, a.file_id, a.line_no)
FROM ({_ALL_LINES}) AS a
JOIN rc_dups d ON d.kind = a.kind AND d.reference = a.reference
"""


def _expected_sql(source: Source, policy: RunPolicy) -> str:
    """The platform's records of the day ($4 start, $5 end of the business day; $2 source,
    $3 day for the hand-overs), as (kind, reference, amount_fen, fee_fen, outcome, state,
    occurred_at, account, origin). Each branch reads one table by its own time column."""
    carried = (
        "SELECT kind, reference, amount_fen, fee_fen, outcome, coalesce(record->>'state', ''), "
        "occurred_at, account, 'carried' FROM recon_carry "
        "WHERE source = $2 AND for_day = $3 AND side = 'platform'"
    )
    if source is Source.BANK:
        return f"""
SELECT 'CREDIT', 'TRANSFER_IN:' || t.record_id, t.trans_amount, coalesce(t.fee, 0),
       {platform_case("t.state", TRANSFER_STATES)}, t.state, t.trans_time, t.account_id, 'day'
FROM bank_transfer_records t
WHERE t.trans_time >= $4 AND t.trans_time < $5 AND t.state <> 'REVERSAL_NOTICE'
UNION ALL
SELECT 'DEBIT', 'TRANSFER_REVERSAL:' || t.record_id, t.reversed_amount, 0, 'OK', t.state,
       t.updated_at, t.account_id, 'day'
FROM bank_transfer_records t
WHERE t.state = 'REVERSED' AND t.reversed_amount > 0 AND t.updated_at >= $4 AND t.updated_at < $5
UNION ALL
SELECT 'DEBIT', 'PAYOUT:' || p.pay_id, p.amount, 0, {platform_case("p.state", PAYOUT_STATES)},
       p.state, p.finished_at, p.payer_account_id, 'day'
FROM payouts p
WHERE p.state IN ('SUCCESS', 'RETURNED') AND p.finished_at >= $4 AND p.finished_at < $5
UNION ALL
SELECT 'CREDIT', 'PAYOUT_RETURN:' || p.pay_id, p.amount, 0, 'OK', p.state, p.updated_at,
       p.payer_account_id, 'day'
FROM payouts p
WHERE p.state = 'RETURNED' AND p.updated_at >= $4 AND p.updated_at < $5
UNION ALL
SELECT 'CREDIT',
       'SPLIT_IN:' || s.settlement_id || ':' || coalesce(part->>'merchantId', '{PLATFORM_MEMBER}'),
       (part->>'amount')::bigint, 0, 'OK', s.state, s.finished_at, part->>'accountId', 'day'
FROM settlements s, jsonb_array_elements(s.parts) AS part
WHERE s.state = 'SETTLED' AND s.finished_at >= $4 AND s.finished_at < $5
  AND (part->>'amount')::bigint > 0
UNION ALL
SELECT 'DEBIT', 'SPLIT_REFUND:' || d.refund_id || ':' || (m->>'memberId'),
       (m->>'amount')::bigint, 0, 'OK', d.state, d.created_at, m->>'accountId', 'day'
FROM order_refund_debits d, jsonb_array_elements(d.members) AS m
WHERE d.created_at >= $4 AND d.created_at < $5
UNION ALL {carried}
"""
    channel = CHANNEL_OF[source]
    ppm = policy.fee_ppm[source]
    return f"""
SELECT 'PAYMENT', o.order_id, o.amount, {fee_sql("o.amount", ppm)},
       {platform_case("o.state", ORDER_STATES)}, o.state, o.paid_at, NULL, 'day'
FROM orders o
WHERE o.channel = '{channel}' AND o.paid_at >= $4 AND o.paid_at < $5
UNION ALL
SELECT 'REFUND', r.refund_id, r.amount, {fee_sql("r.amount", ppm)},
       {platform_case("r.state", REFUND_STATES)}, r.state, r.finished_at, NULL, 'day'
FROM order_refunds r
WHERE r.state = 'SUCCESS' AND r.finished_at >= $4 AND r.finished_at < $5
  AND EXISTS (SELECT 1 FROM orders o WHERE o.order_id = r.order_id AND o.channel = '{channel}')
UNION ALL {carried}
"""


_E_COLUMNS = "kind, reference, amount_fen, fee_fen, outcome, state, occurred_at, account, origin"


def _unpaired_sql(source: Source, policy: RunPolicy) -> str:
    """The one full join: the first line of each (kind, reference) against the day's records,
    keeping only what does not agree (or has one side)."""
    return f"""
INSERT INTO rc_items
SELECT NULL, coalesce(l.kind, e.kind), coalesce(l.reference, e.reference),
       coalesce(l.account, e.account),
       l.file_id, l.line_no, l.source_ref, l.amount_fen, l.fee_fen, l.status, l.outcome,
       l.occurred_at, l.carried, CASE WHEN l.kind IS NULL THEN NULL ELSE 1 END,
       e.amount_fen, e.fee_fen, e.state, e.outcome, e.occurred_at, e.account, e.origin
FROM (
    SELECT * FROM ({_ALL_LINES}) AS a
    WHERE NOT EXISTS (SELECT 1 FROM rc_dups d WHERE d.kind = a.kind AND d.reference = a.reference)
    UNION ALL
    SELECT file_id, line_no, kind, reference, source_ref, amount_fen, fee_fen, status,
           outcome, occurred_at, account, carried
    FROM rc_dup_lines WHERE rn = 1
) AS l
FULL JOIN ({_expected_sql(source, policy)}) AS e ({_E_COLUMNS})
    ON e.kind = l.kind AND e.reference = l.reference
WHERE l.kind IS NULL OR e.kind IS NULL OR e.outcome <> l.outcome
   OR e.amount_fen <> l.amount_fen OR e.fee_fen <> l.fee_fen
"""


_REPEATS = """
INSERT INTO rc_items
SELECT NULL, kind, reference, account, file_id, line_no, source_ref, amount_fen, fee_fen,
       status, outcome, occurred_at, carried, rn, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM rc_dup_lines WHERE rn > 1
"""


def _lookup_sql(source: Source, policy: RunPolicy) -> str:
    """The records of the lines with no record beside them, looked up by key (primary keys):
    a few thousand at most. A duplicate's first line may have matched; its repeats take the
    record as evidence all the same."""
    target = """
UPDATE rc_items i SET e_amount = x.amount_fen, e_fee = x.fee_fen, e_state = x.state,
    e_outcome = x.outcome, e_at = x.occurred_at, e_account = x.account,
    e_origin = CASE WHEN i.l_rn > 1 THEN 'day' ELSE 'lookup' END
FROM ({records}) AS x (kind, reference, amount_fen, fee_fen, outcome, state, occurred_at, account)
WHERE i.e_amount IS NULL AND i.kind = x.kind AND i.reference = x.reference;
"""
    keys = "SELECT reference FROM rc_items WHERE e_amount IS NULL AND kind = '{kind}'"
    bank_keys = (
        "SELECT substr(reference, length('{prefix}') + 1) FROM rc_items "
        "WHERE e_amount IS NULL AND kind = '{kind}' AND starts_with(reference, '{prefix}')"
    )
    if source is Source.BANK:
        records = [
            f"""
SELECT DISTINCT ON (t.record_id) 'CREDIT', 'TRANSFER_IN:' || t.record_id, t.trans_amount,
       coalesce(t.fee, 0), {platform_case("t.state", TRANSFER_STATES)}, t.state, t.trans_time,
       t.account_id
FROM bank_transfer_records t
WHERE t.record_id IN ({bank_keys.format(kind="CREDIT", prefix="TRANSFER_IN:")})""",
            f"""
SELECT 'DEBIT', 'PAYOUT:' || p.pay_id, p.amount, 0, {platform_case("p.state", PAYOUT_STATES)},
       p.state, coalesce(p.finished_at, p.updated_at), p.payer_account_id
FROM payouts p
WHERE p.pay_id IN ({bank_keys.format(kind="DEBIT", prefix="PAYOUT:")})""",
        ]
    else:
        channel = CHANNEL_OF[source]
        ppm = policy.fee_ppm[source]
        records = [
            f"""
SELECT 'PAYMENT', o.order_id, o.amount, {fee_sql("o.amount", ppm)},
       {platform_case("o.state", ORDER_STATES)}, o.state, coalesce(o.paid_at, o.updated_at),
       NULL::text
FROM orders o
WHERE o.channel = '{channel}' AND o.order_id IN ({keys.format(kind="PAYMENT")})""",
            f"""
SELECT 'REFUND', r.refund_id, r.amount, {fee_sql("r.amount", ppm)},
       {platform_case("r.state", REFUND_STATES)}, r.state, coalesce(r.finished_at, r.updated_at),
       NULL::text
FROM order_refunds r JOIN orders o ON o.order_id = r.order_id
WHERE o.channel = '{channel}' AND r.refund_id IN ({keys.format(kind="REFUND")})""",
        ]
    return "".join(target.format(records=r) for r in records)


# $1: from when an unmatched item is handed to the next day; $2, $3: the next day's first
# minutes (a record there, with the line here, is matched by the next day's run).
_CLASSIFY = """
UPDATE rc_items SET cls = CASE
    WHEN l_rn > 1 THEN 'duplicate'
    WHEN l_amount IS NULL THEN
        CASE WHEN e_origin = 'day' AND e_at >= $1 THEN 'carry_platform'
             ELSE 'missing_at_channel' END
    WHEN e_amount IS NULL THEN
        CASE WHEN NOT l_carried AND l_at >= $1 THEN 'carry_statement'
             ELSE 'missing_on_platform' END
    WHEN e_origin = 'lookup' AND NOT l_carried AND e_outcome = l_outcome
         AND e_at >= $2 AND e_at < $3 THEN 'carry_statement'
    WHEN e_outcome <> l_outcome THEN 'status_mismatch'
    WHEN e_amount <> l_amount THEN 'amount_mismatch'
    WHEN e_fee <> l_fee THEN 'fee_difference'
    ELSE 'matched'
END, account = coalesce(account, e_account)
"""

# What each side moved on the account (the bank: credits in, debits out); a repeated line
# moved money at the bank once more, the platform's record counts once. Every line of the bank's
# moved its balance, whatever its status (a REVERSED line was booked, and is undone by a later
# line of its own: the file's running balances say so, and its reader checks them).
_L_EFFECT = "CASE kind WHEN 'DEBIT' THEN -coalesce(l_amount, 0) ELSE coalesce(l_amount, 0) END"
_E_EFFECT = (
    "CASE WHEN e_outcome = 'OK' AND coalesce(l_rn, 1) = 1 "
    "THEN CASE kind WHEN 'DEBIT' THEN -e_amount ELSE e_amount END ELSE 0 END"
)

_STATEMENT_JSON = """
CASE WHEN l_amount IS NULL THEN NULL ELSE jsonb_build_object(
    'fileId', l_file_id, 'lineNo', l_line_no, 'kind', kind, 'reference', reference,
    'sourceRef', l_source_ref, 'amountFen', l_amount, 'feeFen', l_fee, 'status', l_status,
    'outcome', l_outcome, 'occurredAt', l_at, 'account', account, 'carried', l_carried) END
"""
_PLATFORM_JSON = """
CASE WHEN e_amount IS NULL THEN NULL ELSE jsonb_build_object(
    'kind', kind, 'reference', reference, 'amountFen', e_amount, 'feeFen', e_fee,
    'state', e_state, 'outcome', e_outcome, 'occurredAt', e_at, 'account', e_account,
    'origin', e_origin) END
"""

_DISCREPANCIES = f"""
INSERT INTO recon_discrepancies (discrepancy_id, run_id, class, kind, reference, account,
    statement_fen, platform_fen, statement_fee, platform_fee, line_file_id, line_no,
    statement, platform)
SELECT $1 || '-' || lpad((row_number() OVER (ORDER BY cls, kind, reference, l_line_no))::text,
                         7, '0'),
       $1, cls, kind, reference, account, l_amount, e_amount, l_fee, e_fee, l_file_id, l_line_no,
       {_STATEMENT_JSON}, {_PLATFORM_JSON}
FROM rc_items WHERE cls NOT IN ('matched', 'carry_platform', 'carry_statement')
"""

_CARRY_OUT = f"""
INSERT INTO recon_carry (source, for_day, side, kind, reference, from_run, line_file_id,
    line_no, amount_fen, fee_fen, outcome, occurred_at, account, record)
SELECT $2::text, $3::date, 'platform', kind, reference, $1, NULL, NULL, e_amount, e_fee,
       e_outcome, e_at, account, {_PLATFORM_JSON}
FROM rc_items WHERE cls = 'carry_platform'
UNION ALL
SELECT $2, $3, 'statement', kind, reference, $1, l_file_id, l_line_no, l_amount, l_fee,
       l_outcome, l_at, account, {_STATEMENT_JSON}
FROM rc_items WHERE cls = 'carry_statement'
ON CONFLICT DO NOTHING
"""


async def _check_balances(
    conn: Connection, run_id: str, file_ids: list[int], window: DayWindow
) -> int:
    """Each closing balance against the ledger's balance of that account at the day's end:
    available and frozen (pending is money paid at a channel and not yet split to the member:
    not at the bank); the difference explained by what the day's discrepancies and hand-overs
    move."""
    await conn.execute(_BALANCE_CHECKS, run_id, file_ids, window.end)
    unexplained: int = await conn.fetchval(
        "SELECT count(*) FROM recon_balance_checks WHERE run_id = $1 AND state = 'UNEXPLAINED'",
        run_id,
    )
    return unexplained


# The bank keeps a sub-account per number it books under, and books a split under the receiving
# depository member's id (settlement's instruction names the merchant by its merchant id, the
# platform's fee by ``PLATFORM_MEMBER``), a payout or withdrawal under the paying ledger account,
# a transfer in under the receiving account. So a merchant is two of the bank's sub-accounts
# (its member id and its ledger account) and one ledger account: the bank's balances are added up
# per ledger account (``held``: a merchant's member id is its ledger account; the platform member
# holds every fee account a settlement paid it through), and each sum checked against the ledger.
_BALANCE_CHECKS = f"""
INSERT INTO recon_balance_checks (run_id, account, ledger_fen, bank_fen, difference,
    explained_fen, state)
WITH sub_accounts AS (
    SELECT account, sum(balance_fen) AS bank_fen FROM recon_closing_balances
    WHERE file_id = ANY($2::bigint[]) GROUP BY account
), members AS (
    SELECT m.merchant_id AS member, m.account_id AS checked, m.account_id AS ledger_account
    FROM merchants m WHERE m.merchant_id IN (SELECT account FROM sub_accounts)
    UNION
    SELECT '{PLATFORM_MEMBER}', '{PLATFORM_MEMBER}', part->>'accountId'
    FROM settlements s, jsonb_array_elements(s.parts) AS part
    WHERE part->>'merchantId' IS NULL AND part->>'accountId' IS NOT NULL
      AND EXISTS (SELECT 1 FROM sub_accounts WHERE account = '{PLATFORM_MEMBER}')
), checked_of AS (
    -- any number the bank or the day's items name -> the account it is checked under
    SELECT member AS named, checked FROM members
    UNION
    SELECT ledger_account, checked FROM members
), closing AS (
    SELECT coalesce(k.checked, b.account) AS account, sum(b.bank_fen) AS bank_fen
    FROM sub_accounts b LEFT JOIN (SELECT DISTINCT member, checked FROM members) k
         ON k.member = b.account
    GROUP BY 1
), held AS (
    SELECT account AS checked, account AS ledger_account FROM closing
    WHERE account <> '{PLATFORM_MEMBER}'
    UNION
    SELECT checked, ledger_account FROM members
), ledger AS (
    SELECT h.checked AS account, sum(p.amount) AS ledger_fen
    FROM postings p JOIN held h ON h.ledger_account = p.account_id
    WHERE p.created_at < $3 AND p.bucket <> 'pending'
    GROUP BY h.checked
), explained AS (
    SELECT coalesce(k.checked, i.account) AS account,
           sum(({_L_EFFECT}) - ({_E_EFFECT})) AS fen
    FROM rc_items i LEFT JOIN checked_of k ON k.named = i.account
    WHERE i.cls <> 'matched'
    GROUP BY 1
)
SELECT $1, c.account, coalesce(g.ledger_fen, 0), c.bank_fen,
       c.bank_fen - coalesce(g.ledger_fen, 0), coalesce(x.fen, 0),
       CASE WHEN c.bank_fen = coalesce(g.ledger_fen, 0) THEN 'AGREED'
            WHEN c.bank_fen - coalesce(g.ledger_fen, 0) = coalesce(x.fen, 0) THEN 'EXPLAINED'
            ELSE 'UNEXPLAINED' END
FROM closing c LEFT JOIN ledger g USING (account) LEFT JOIN explained x USING (account)
"""


def summary(result: RunResult) -> dict[str, Any]:
    return {
        "runId": result.run_id,
        "source": result.source.value,
        "date": result.day.isoformat(),
        "lineCount": result.line_count,
        "recordCount": result.record_count,
        "carriedIn": result.carried_in,
        "carriedOut": result.carried_out,
        "unexplainedBalances": result.unexplained,
        "superseded": result.superseded,
    }
