"""How runs, discrepancies, balance checks and actions read on the API and in the CLI's
``--json``: camelCase, classes by their wire names, money in integer fen. Pure: rows in,
dicts out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fundhub.common.clock import iso_utc
from fundhub.reconciliation.classes import MatchClass, per_class


def _time(value: Any) -> str | None:
    return iso_utc(value) if isinstance(value, datetime) else None


def run_body(row: Mapping[str, Any]) -> dict[str, Any]:
    day: date = row["day"]
    return {
        "runId": row["run_id"],
        "source": row["source"],
        "date": day.isoformat(),
        "state": row["state"],
        "supersededBy": row["superseded_by"],
        "fileId": row["file_id"],
        "fileIds": list(row["file_ids"]),
        "fileName": row["name"],
        "fileSha256": row["sha256"],
        "counts": per_class(row["counts"]),
        "sums": per_class(row["sums"]),
        "lineCount": row["line_count"],
        "recordCount": row["record_count"],
        "carriedIn": row["carried_in"],
        "carriedOut": row["carried_out"],
        "unexplainedBalances": row["unexplained"],
        "startedAt": _time(row["started_at"]),
        "finishedAt": _time(row["finished_at"]),
        "runBy": row["run_by"],
    }


def balance_body(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "account": row["account"],
        "ledgerFen": row["ledger_fen"],
        "bankFen": row["bank_fen"],
        "difference": row["difference"],
        "explainedFen": row["explained_fen"],
        "state": row["state"],
    }


def discrepancy_body(row: Mapping[str, Any]) -> dict[str, Any]:
    statement, platform = row["statement_fen"], row["platform_fen"]
    return {
        "discrepancyId": row["discrepancy_id"],
        "runId": row["run_id"],
        "class": MatchClass(row["class"]).wire,
        "state": row["state"],
        "kind": row["kind"],
        "reference": row["reference"],
        "account": row["account"],
        "statementFen": statement,
        "platformFen": platform,
        "differenceFen": (statement or 0) - (platform or 0),
        "statementFee": row["statement_fee"],
        "platformFee": row["platform_fee"],
        "lineNo": row["line_no"],
        "statement": row["statement"],
        "platform": row["platform"],
        "proposal": row["proposal"],
        "proposedBy": row["proposed_by"],
        "entryId": str(row["entry_id"]) if row["entry_id"] is not None else None,
        "createdAt": _time(row["created_at"]),
        "updatedAt": _time(row["updated_at"]),
    }


def action_body(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "actionId": row["action_id"],
        "action": row["action"],
        "fromState": row["from_state"],
        "toState": row["to_state"],
        "actor": row["actor"],
        "reason": row["reason"],
        "detail": row["detail"],
        "at": _time(row["at"]),
    }
