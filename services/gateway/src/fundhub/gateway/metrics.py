"""The gateway's Prometheus metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "fundhub_gateway_http_requests_total", "HTTP requests answered", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "fundhub_gateway_http_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ANSWERS = Counter(
    "fundhub_gateway_answers_total",
    "Answers by route and error code (OK below 400; HTTP_<status> for an error without a code)",
    ["route", "code"],
)
BANK_NOTIFICATIONS = Counter(
    "fundhub_gateway_bank_notifications_total",
    "Bank notifications by outcome (accepted, kept-unhandled, refused, unavailable)",
    ["outcome"],
)
CHANNEL_NOTIFICATIONS = Counter(
    "fundhub_gateway_channel_notifications_total",
    "WeChat Pay and Alipay notifications by channel and outcome (accepted, refused, unavailable)",
    ["channel", "outcome"],
)
AUTH_FAILURES = Counter(
    "fundhub_gateway_auth_failures_total", "Refused upstream requests by error code", ["code"]
)
RATE_LIMITED = Counter(
    "fundhub_gateway_rate_limited_total",
    "Requests refused with 429, by limit (key, bank-callback, auth-failures)",
    ["limit"],
)
RATE_LIMIT_STORE_ERRORS = Counter(
    "fundhub_gateway_rate_limit_store_errors_total",
    "Rate limit checks that could not reach their store and let the request pass (fail open)",
)
