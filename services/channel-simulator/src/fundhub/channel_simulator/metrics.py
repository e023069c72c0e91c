"""Prometheus counters of the channel simulator (``/metrics``), named like the other services'."""

from __future__ import annotations

from prometheus_client import Counter

NOTICES = Counter(
    "fundhub_channel_simulator_notices_total",
    "Notices by channel and what became of them (sent, duplicated, delivered, gave-up)",
    ["channel", "outcome"],
)
RETRIES = Counter(
    "fundhub_channel_simulator_retries_total",
    "Notices sent again after a failed attempt",
    ["channel"],
)
