"""The merchants worker's Prometheus metrics (a person is paged on ALERTS)."""

from __future__ import annotations

from prometheus_client import Counter

MESSAGES = Counter(
    "fundhub_merchants_messages_total",
    "Merchant commands and depository results consumed, by outcome",
    ["stream", "outcome"],
)
DEPOSITORY_CALLS = Counter(
    "fundhub_merchants_depository_calls_total",
    "Calls to the depository's member API, by call and outcome",
    ["call", "outcome"],
)
ALERTS = Counter(
    "fundhub_merchants_alerts_total",
    "Depository results that moved nothing for a reason a person must look at",
    ["reason"],
)
