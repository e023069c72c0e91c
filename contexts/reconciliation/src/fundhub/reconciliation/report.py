"""A run's daily report as CSV and as an HTML page. Pure: rows in, text out.

HTML escapes every value (references and statuses come from outside files); CSV cells that a
spreadsheet would read as a formula are prefixed with a quote.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping
from typing import Any

from fundhub.reconciliation.classes import MatchClass

COLUMNS = (
    "discrepancyId",
    "class",
    "state",
    "kind",
    "reference",
    "account",
    "statementFen",
    "platformFen",
    "statementFee",
    "platformFee",
    "lineNo",
)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return (
        "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text
    )


def _number(text: str) -> bool:
    return text.lstrip("-").isdigit()


def csv_report(run: Mapping[str, Any], discrepancies: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["runId", run["runId"], "source", run["source"], "date", run["date"]])
    writer.writerow(["class", "count", "sumFen"])
    for c in MatchClass:
        writer.writerow([c.wire, run["counts"][c.wire], run["sums"][c.wire]])
    writer.writerow([])
    writer.writerow(COLUMNS)
    for d in discrepancies:
        writer.writerow([_cell(d.get(col)) for col in COLUMNS])
    return out.getvalue()


def html_report(
    run: Mapping[str, Any],
    discrepancies: Iterable[Mapping[str, Any]],
    balances: Iterable[Mapping[str, Any]] = (),
) -> str:
    e = html.escape
    title = f"Reconciliation {e(str(run['source']))} {e(str(run['date']))}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "td.n{text-align:right}</style></head><body>",
        f"<h1>{title}</h1><p>Run {e(str(run['runId']))}</p>",
        "<table><tr><th>class</th><th>count</th><th>sum (fen)</th></tr>",
    ]
    for c in MatchClass:
        parts.append(
            f"<tr><td>{c.wire}</td><td class='n'>{run['counts'][c.wire]}</td>"
            f"<td class='n'>{run['sums'][c.wire]}</td></tr>"
        )
    parts.append("</table>")
    balance_rows = list(balances)
    if balance_rows:
        parts.append(
            "<h2>Balances</h2><table><tr><th>account</th><th>ledger</th><th>bank</th>"
            "<th>difference</th><th>explained</th><th>state</th></tr>"
        )
        for b in balance_rows:
            cells = (b["account"], b["ledgerFen"], b["bankFen"], b["difference"])
            parts.append(
                "<tr>"
                + "".join(f"<td>{e(str(v))}</td>" for v in cells)
                + f"<td>{e(str(b['explainedFen']))}</td><td>{e(str(b['state']))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Discrepancies</h2><table><tr>")
    parts.extend(f"<th>{col}</th>" for col in COLUMNS)
    parts.append("</tr>")
    for d in discrepancies:
        parts.append(
            "<tr>" + "".join(f"<td>{e(_cell(d.get(col)))}</td>" for col in COLUMNS) + "</tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)
