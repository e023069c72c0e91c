"""The series every worker exports alike, whatever it consumes: declared once, so that the
alert rules (``deploy/prometheus``) and the dashboard (``deploy/grafana``) name one metric per
fact, not one per service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "fundhub_consumer_lag_messages",
    "Messages on a partition not yet processed by the group (high watermark - next offset)",
    ["group", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "fundhub_dead_letters_total",
    "Messages parked on the dead-letter topic, by the topic they came from",
    ["topic"],
)
# Sampled gauges without labels are registered by the Sampler that fills them
# (``sampling.Probe.gauges``): a process that never samples must not show a 0 that looks read.
OUTBOX_BACKLOG = Gauge(
    "fundhub_outbox_backlog",
    "Outbox rows written but not yet published (counted up to OUTBOX_COUNT_CAP)",
    registry=None,
)
OUTBOX_OLDEST_AGE = Gauge(
    "fundhub_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none waits)",
    registry=None,
)
INBOX_ROWS = Gauge(
    "fundhub_inbox_rows_estimate",
    "Rows in the inbox, as the planner's statistics estimate them (no count: the table is big)",
    registry=None,
)
PAST_DEADLINE = Gauge(
    "fundhub_processing_past_deadline",
    "Items still PROCESSING after their deadline, by kind (payout, refund)",
    ["kind"],
)
SAMPLE_FAILURES = Counter(
    "fundhub_sample_failures_total",
    "Timed samples of the database that failed (the gauges keep their last value)",
    ["probe"],
)
# Filled by the reconciler (``reconciliation.open_discrepancies``), per source (bank, wechatpay,
# alipay) and class: OPEN or ADJUSTMENT_PROPOSED discrepancies of current runs.
RECONCILIATION_DISCREPANCIES_OPEN = Gauge(
    "fundhub_reconciliation_discrepancies_open",
    "Reconciliation discrepancies still open, by source and class",
    ["source", "class"],
)
