"""The webhooks' backlog, sampled from the deliveries table (attempts and outcomes are counted
where they happen, in ``sender``)."""

from __future__ import annotations

from prometheus_client import Gauge

PENDING = Gauge(
    "fundhub_callbacks_pending",
    "Client callbacks not yet delivered nor given up (counted up to PENDING_CAP)",
    registry=None,  # registered by the Sampler that fills it (``sampling.Probe``)
)
OLDEST_PENDING_AGE = Gauge(
    "fundhub_callbacks_oldest_pending_age_seconds",
    "Age of the oldest callback still pending (0 when none is)",
    registry=None,
)
