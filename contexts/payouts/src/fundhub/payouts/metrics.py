"""The payment worker's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS = Counter(
    "fundhub_payouts_alerts_total",
    "Payout events a person must look at (contradicting reports, missed deadlines, ...)",
    ["reason"],
)
MESSAGES = Counter(
    "fundhub_payment_worker_messages_total",
    "Consumed messages by consumer and outcome",
    ["consumer", "outcome"],
)
BANK_CALLS = Counter(
    "fundhub_payment_worker_bank_calls_total",
    "Calls to the bank's payout API by action and outcome",
    ["action", "outcome"],
)
TRANSITIONS = Counter(
    "fundhub_payouts_transitions_total", "Payout state changes by new state", ["state"]
)
PAYOUT_ADMIT_BATCH = Histogram(
    "fundhub_gateway_payout_admit_batch_size",
    "Payout submissions written by one statement (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
