"""Settlement's Prometheus metrics (served by payment-worker, where it runs)."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS = Counter(
    "fundhub_settlement_alerts_total",
    "Settlement events a person must look at (contradicting or foreign reports, missing pending)",
    ["reason"],
)
TRANSITIONS = Counter(
    "fundhub_settlement_transitions_total", "Settlement state changes by new state", ["state"]
)
SCHEDULED = Counter(
    "fundhub_settlement_scheduled_total",
    "Orders taken by the T+1 scheduler, by outcome",
    ["outcome"],
)
DEPOSITORY_CALLS = Counter(
    "fundhub_settlement_depository_calls_total",
    "Calls to the depository's split API by action and outcome",
    ["action", "outcome"],
)
RESULTS = Counter(
    "fundhub_settlement_results_total", "Consumed split results by outcome", ["outcome"]
)
