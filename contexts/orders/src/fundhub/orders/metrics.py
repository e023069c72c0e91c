"""The orders context's Prometheus metrics (alerts are what a person must look at)."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS = Counter(
    "fundhub_orders_alerts_total",
    "Order and refund events a person must look at: exceptions kept for reconciliation,"
    " contradicting or abnormal results, refunds past their deadline",
    ["reason"],
)
EXCEPTIONS = Counter(
    "fundhub_orders_exceptions_total",
    "Verified channel notifications kept as exceptions (no order, another app, another"
    " amount, an unknown refund, a contradiction): they moved no money",
    ["channel", "kind"],
)
TRANSITIONS = Counter(
    "fundhub_orders_transitions_total", "Order and refund state changes", ["subject", "state"]
)
MESSAGES = Counter(
    "fundhub_orders_messages_total",
    "Consumed messages by consumer and outcome",
    ["consumer", "outcome"],
)
CHANNEL_CALLS = Counter(
    "fundhub_orders_channel_calls_total",
    "Calls to the channels by action and outcome",
    ["channel", "action", "outcome"],
)
DEPOSITORY_CALLS = Counter(
    "fundhub_orders_depository_calls_total", "Order registrations with the depository", ["outcome"]
)
REFUND_DEBIT_CALLS = Counter(
    "fundhub_orders_refund_debit_calls_total",
    "Refund debits sent to (or asked of) the depository, by action and outcome",
    ["action", "outcome"],
)
