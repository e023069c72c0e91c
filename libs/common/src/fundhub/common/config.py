"""Configuration from the environment (prefix ``FUNDHUB_``), one model for every service."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The gateway's route for the bank's signed notifications. Here, beside the gateway's address,
# because the processes that tell the bank where to call (payment-worker) or call it themselves
# (the bank simulator) need it as much as the gateway that serves it.
BANK_CALLBACK_PATH = "/callbacks/bank"
# The channels' notifications (WeChat Pay APIv3, Alipay async notify); here for the same reason:
# the notify_url sent with each payment and refund names them.
WECHATPAY_CALLBACK_PATH = "/callbacks/wechatpay"
ALIPAY_CALLBACK_PATH = "/callbacks/alipay"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FUNDHUB_", extra="ignore")

    env: Literal["dev", "prod", "test"] = "dev"
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://fundhub@127.0.0.1:55432/fundhub"
    # Prefix of every topic and consumer group, so several deployments (or test runs) can share
    # one cluster without reading each other's messages.
    topic_namespace: str = "fundhub"
    topic_partitions: int = 6
    # 1 for the local single-node broker; 3 (with min.insync.replicas 2) on a real cluster.
    topic_replication_factor: int = 1
    # Base64 of 32 bytes; seals API secrets at rest. Required outside dev/test.
    master_key: str | None = Field(default=None, repr=False)
    # During a master-key rotation only: the key being replaced, so blobs it sealed still open
    # until `fundhub master-key rotate` has re-sealed them under master_key.
    master_key_previous: str | None = Field(default=None, repr=False)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # The gateway's operations port (/metrics, /docs): loopback only unless an operator says.
    gateway_ops_host: str = "127.0.0.1"
    gateway_ops_port: int = 8010
    notify_ingest_port: int = 8001
    bank_simulator_port: int = 8100
    payment_worker_port: int = 8002

    # The gateway's connections (README "Transport"): a request's headers and body must arrive
    # within these times, idle keep-alive connections close, and connections beyond the caps
    # (in all, from one address) are closed as they are accepted; requests in progress beyond
    # the concurrency limit get a 503.
    gateway_header_timeout_s: float = 5.0
    gateway_body_timeout_s: float = 15.0
    gateway_keepalive_s: float = 5.0
    gateway_max_connections: int = 4096
    gateway_max_connections_per_address: int = 256
    gateway_limit_concurrency: int = 1024
    # TLS terminated by the gateway itself (TLS 1.2+, modern suites); with a client CA, client
    # certificates are verified and can be bound to a key (`fundhub key bind-cert`).
    gateway_tls_certfile: str | None = None
    gateway_tls_keyfile: str | None = None
    gateway_tls_client_ca: str | None = None

    # The bank app payouts are sent through (recorded on each payout): only a result signed
    # for this app counts for them. The seed's app id, which the dev stack gives the simulator.
    bank_app_id: str = "20210911888888888888888888"
    # The bank's payout API (the simulator locally) and how long one request may take.
    bank_base_url: str = "http://127.0.0.1:8100"
    bank_timeout_s: float = 5.0
    # TLS towards the bank's API: a CA bundle to trust, and a client certificate for mutual TLS.
    bank_tls_ca: str | None = None
    bank_tls_certfile: str | None = None
    bank_tls_keyfile: str | None = Field(default=None, repr=False)
    # Where the bank is told to send payout results; default: this gateway's /callbacks/bank.
    payout_notify_url: str | None = None
    # A payout with no final state this long after acceptance raises an alert (once).
    payout_result_deadline_s: int = 600
    # The poller: how often it looks, and the backoff between queries of one payout.
    payout_poll_interval_s: float = 1.0
    payout_poll_base_s: float = 5.0
    payout_poll_max_s: float = 300.0

    # Merchants: when payment-worker first asks the depository about a request it has no result
    # for (its notification normally comes first), and the longest pause between two looks.
    merchant_poll_base_s: float = 5.0
    merchant_poll_max_s: float = 300.0
    # The payment channels' APIs (the channel simulator locally; in production
    # https://api.mch.weixin.qq.com and https://openapi.alipay.com/gateway.do), how long one
    # request may take, and the base URL the channels are told to notify (this gateway's, as the
    # channels reach it; default: the gateway's own address).
    channel_simulator_port: int = 8101
    wechatpay_base_url: str = "http://127.0.0.1:8101"
    alipay_gateway_url: str = "http://127.0.0.1:8101/gateway.do"
    channel_timeout_s: float = 5.0
    channel_notify_base_url: str | None = None
    # Settlement (fundhub.settlement): orders paid on day D settle at this cut-off of D+1,
    # HH:MM in GMT+8; the scheduler looks this often, and asks the depository about an
    # instruction it has not reported on after a backoff from base to max.
    settlement_cutoff: str = Field(default="02:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    settlement_interval_s: float = 1.0
    settlement_poll_base_s: float = 5.0
    settlement_poll_max_s: float = 300.0
    # Reconciliation (fundhub.reconciliation, services/reconciler): the channels' fee rate in
    # parts per million, how close to midnight an unmatched item waits for the next day's run,
    # the largest statement file taken (upload or download), and when the reconciler fetches
    # the previous day's files (HH:MM, GMT+8) from which sources.
    recon_wechatpay_fee_ppm: int = Field(default=6000, ge=0, le=1_000_000)
    recon_alipay_fee_ppm: int = Field(default=6000, ge=0, le=1_000_000)
    recon_carry_window_s: int = Field(default=300, ge=0, le=7200)
    recon_max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    recon_fetch_at: str = Field(default="10:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    recon_sources: str = "bank,wechatpay,alipay"
    reconciler_port: int = 8005
    # Orders (fundhub.orders): how long the gateway waits for the depository (each of 2 tries)
    # while it creates an order, and how payment-worker follows a refund the channel did not
    # report on (backoff between looks; an alert past the deadline).
    depository_timeout_s: float = 3.0
    refund_poll_base_s: float = 5.0
    refund_poll_max_s: float = 300.0
    refund_result_deadline_s: int = 86400

    bank_timestamp_tolerance_s: int = 600
    api_timestamp_tolerance_s: int = 300
    kafka_publish_timeout_s: float = 5.0
    db_pool_max: int = 10
    # After SIGTERM a worker exits within this many seconds, whatever its tasks do.
    stop_deadline_s: float = 20.0
    # Workers read their backlog gauges (outbox, inbox, late items, callbacks) this often.
    metrics_sample_s: float = 15.0
    log_level: str = "INFO"
    # OpenTelemetry traces (fundhub.common.tracing): the OTLP/HTTP receiver's base address, e.g.
    # http://collector:4318 (spans go to its /v1/traces). Unset, nothing is traced or exported.
    otlp_endpoint: str | None = None

    # Client callbacks: a delivery is retried with capped exponential backoff until it is this
    # old (at least a day, so a client's outage overnight loses nothing), then given up.
    callback_dispatcher_port: int = 8003
    callback_timeout_s: float = 5.0
    callback_max_age_s: float = 86400 * 2
    callback_backoff_base_s: float = 1.0
    callback_backoff_max_s: float = 3600.0
    # Callbacks go to public addresses only (checked when a payout is submitted and again for
    # every address connected to). Comma-separated CIDRs an operator lets through as well,
    # e.g. 127.0.0.1/32 for a receiver on the same machine; empty by default.
    callback_allow_cidrs: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    @field_validator("callback_allow_cidrs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    # The audit log: the gateway makes an entry of every answer durable (Kafka, acks=all)
    # before it leaves; off only to measure what it costs. Months younger than the retention
    # are never archived (dropped from the database after export).
    audit_enabled: bool = True
    # Sends of entries to Kafka start at most this often (each send costs the gateway 0.3 to
    # 0.7 ms of CPU whatever it carries): the CPU they take is bounded, and an answer may wait
    # up to this long for its entry's send when the broker is quick (a busy one is slower).
    audit_send_interval_s: float = 0.025
    audit_writer_port: int = 8004
    audit_retention_months: int = 36

    # Retention of the exactly-once plumbing (fundhub.common.retention): an inbox id is kept
    # longer than any peer re-sends (bank 3x3 min, WeChat Pay ~24 h, Alipay ~25 h, Kafka
    # re-delivery; keep it at least the topics' retention); a published outbox row an hour.
    inbox_dedupe_window_s: float = Field(default=7 * 86400, ge=2 * 86400)
    outbox_keep_published_s: float = Field(default=3600, ge=0)
    retention_interval_s: float = Field(default=60, gt=0)

    def master_keys(self) -> list[str]:
        """The keys that may open a sealed secret: the current one first (it seals)."""
        return [k for k in (self.master_key, self.master_key_previous) if k]

    # Rate limits (fundhub.access.limits: N/second|minute|hour), counted in Postgres so that
    # every gateway replica enforces the same ones. Per key and route, by route class (a key's
    # own limits: `fundhub api-key rate-limit`); per source address for the bank's callback and
    # for requests that fail authentication. Off only to measure what the checks cost.
    rate_limits_enabled: bool = True
    rate_limit_read: str = "200/second"
    rate_limit_write: str = "1000/second"
    rate_limit_bank_callback: str = "5000/second"
    rate_limit_channel_callback: str = "5000/second"
    rate_limit_auth_failures: str = "100/second"
    # Where the buckets live (default: the main database), and how long a check may take before
    # the request passes unchecked (fail open, counted and logged).
    rate_limit_database_url: str | None = None
    rate_limit_timeout_s: float = 0.25

    def bank_callback_url(self) -> str:
        """Where the bank is told to send payout results: configured, or this gateway's route."""
        if self.payout_notify_url:
            return self.payout_notify_url
        return f"http://{self.gateway_host}:{self.gateway_port}{BANK_CALLBACK_PATH}"

    def channel_notify_url(self, path: str) -> str:
        """Where a channel is told to notify (``path``: one of the channel callback paths)."""
        base = self.channel_notify_base_url or f"http://{self.gateway_host}:{self.gateway_port}"
        return base.rstrip("/") + path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
