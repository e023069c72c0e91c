"""Prometheus counters of the simulator, fed by the sender through ``DeliveryObserver``."""

from __future__ import annotations

from prometheus_client import Counter

from fundhub.bank_simulator.sender import Delivery

# Named like the other services' metrics (fundhub_<service>_...).
NOTIFICATIONS_SENT = Counter(
    "fundhub_bank_simulator_notifications_sent_total",
    "Notifications delivered (success) or given up after the last retry (failure).",
    ["outcome"],
)
RETRIES = Counter(
    "fundhub_bank_simulator_retries_total", "Notifications re-sent after a failed attempt."
)


class PrometheusObserver:
    """Counts into the process-wide registry that ``/metrics`` exposes."""

    def retried(self) -> None:
        RETRIES.inc()

    def delivered(self, delivery: Delivery) -> None:
        NOTIFICATIONS_SENT.labels(outcome=delivery.outcome.value).inc()
