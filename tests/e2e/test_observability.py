"""What operators watch, against the services as processes: every panel of the Grafana
dashboard and every alert rule reads metrics the running services export; the series move
(an answer per error code, a dead letter, a consumer's lag, the sampled gauges)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from support.deploy_files import DASHBOARD, RULES, metric_families
from support.env import ModuleEnv
from support.processes import Service, free_port, gateway, notify_ingest, ops_url

from fundhub.common.topics import topics

from .conftest import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

_TYPE = re.compile(r"^# TYPE (\S+) \S+$", re.MULTILINE)


def worker(env: ModuleEnv, name: str, port_setting: str, **extra: str) -> Service:
    port = free_port()
    return Service(
        env,
        name,
        f"fundhub-{name}",
        port,
        **{port_setting: str(port)},
        FUNDHUB_METRICS_SAMPLE_S="0.5",
        **extra,
    )


@dataclass
class Scrapes:
    """``/metrics`` of every service, by service name."""

    urls: dict[str, str]

    async def texts(self) -> dict[str, str]:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(*(client.get(u) for u in self.urls.values()))
        for name, answer in zip(self.urls, answers, strict=True):
            assert answer.status_code == 200, name
        return {name: a.text for name, a in zip(self.urls, answers, strict=True)}

    async def families(self) -> set[str]:
        """Every family some service declares (``# TYPE``), whether it has samples yet or not."""
        return {f for text in (await self.texts()).values() for f in _TYPE.findall(text)}

    async def samples(self, name: str) -> list[tuple[str, dict[str, str], float]]:
        """(service, labels, value) of every sample of metric ``name``."""
        return [
            (service, sample.labels, sample.value)
            for service, text in (await self.texts()).items()
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]


@dataclass
class Watched:
    env: ModuleEnv
    gateway: Service
    scrapes: Scrapes


@pytest.fixture(scope="module")
async def watched(env: ModuleEnv) -> AsyncIterator[Watched]:
    gw = gateway(env)
    unused = f"http://127.0.0.1:{free_port()}"  # no bank: nothing here calls it
    services = [
        gw,
        notify_ingest(env),
        worker(
            env,
            "payment-worker",
            "FUNDHUB_PAYMENT_WORKER_PORT",
            FUNDHUB_BANK_BASE_URL=unused,
            FUNDHUB_WECHATPAY_BASE_URL=unused,
            FUNDHUB_ALIPAY_GATEWAY_URL=f"{unused}/gateway.do",
        ),
        worker(env, "callback-dispatcher", "FUNDHUB_CALLBACK_DISPATCHER_PORT"),
        worker(env, "audit-writer", "FUNDHUB_AUDIT_WRITER_PORT"),
        # Its first fetch (of the due day) finds no bank: it logs and waits.
        worker(
            env,
            "reconciler",
            "FUNDHUB_RECONCILER_PORT",
            FUNDHUB_BANK_BASE_URL=unused,
            FUNDHUB_RECON_SOURCES="bank",
        ),
    ]
    services[1].extra_env["FUNDHUB_METRICS_SAMPLE_S"] = "0.5"
    try:
        for service in services:
            service.start()
        await asyncio.gather(*(service.wait_ready() for service in services))
        urls = {s.name: f"{s.url}/metrics" for s in services[1:]}
        urls["gateway"] = f"{ops_url(gw)}/metrics"
        yield Watched(env, gw, Scrapes(urls))
    finally:
        for service in services:
            service.terminate()
        for service in services:
            service.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text())
    queries = [
        (panel["title"], target["expr"])
        for panel in document["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    assert len(queries) >= 15
    return queries


def rule_queries() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in document["groups"] for r in g["rules"]]


async def test_every_dashboard_panel_and_alert_reads_an_exported_metric(
    watched: Watched,
) -> None:
    exported = await watched.scrapes.families()
    for source, queries in (("panel", dashboard_queries()), ("alert", rule_queries())):
        for title, expr in queries:
            names = metric_families(expr)
            assert names, f"{source} {title!r} reads no fundhub metric: {expr}"
            assert names <= exported, f"{source} {title!r}: {names - exported} not exported"


async def test_answers_are_counted_per_error_code(watched: Watched) -> None:
    async with httpx.AsyncClient(base_url=watched.gateway.url, timeout=10) as client:
        answer = await client.get("/v1/accounts/A1/balance")  # unsigned
    code = answer.json()["errorCode"]
    assert answer.status_code >= 400

    async def counted() -> bool:
        samples = await watched.scrapes.samples("fundhub_gateway_answers_total")
        return any(
            labels == {"route": "/v1/accounts/{accountId}/balance", "code": code} and value >= 1
            for _, labels, value in samples
        )

    await wait_until(counted, timeout_s=10)


async def test_workers_report_lag_and_their_sampled_gauges(watched: Watched) -> None:
    names = topics(watched.env.settings)

    seen: dict[str, object] = {}

    async def reported() -> bool:
        lag = await watched.scrapes.samples("fundhub_consumer_lag_messages")
        outbox = await watched.scrapes.samples("fundhub_outbox_backlog")
        late = await watched.scrapes.samples("fundhub_processing_past_deadline")
        pending = await watched.scrapes.samples("fundhub_callbacks_pending")
        discrepancies = await watched.scrapes.samples("fundhub_reconciliation_discrepancies_open")
        seen.update(
            groups={labels["group"] for _, labels, _ in lag},
            outbox={service for service, _, _ in outbox},
            late=sorted(labels["kind"] for _, labels, _ in late),
            pending=[value for _, _, value in pending],
            discrepancies={(s, labels["source"]) for s, labels, _ in discrepancies},
        )
        # Every worker's groups report the lag of the partitions their member holds; only the
        # workers sample the database (the gateway shows no backlog it never read).
        groups = {names.group(g) for g in ("notify-ingest", "audit-writer", "callback-dispatcher")}
        groups |= {names.group(f"payment-worker.{g}") for g in ("commands", "results")}
        return (
            groups <= seen["groups"]  # type: ignore[operator]
            and seen["outbox"]
            == {
                "notify-ingest",
                "payment-worker",
                "callback-dispatcher",
                "audit-writer",
                "reconciler",
            }
            and seen["late"] == ["payout", "refund"]
            and seen["pending"] == [0.0]
            and seen["discrepancies"]
            == {("reconciler", source) for source in ("bank", "wechatpay", "alipay")}
        )

    try:
        await wait_until(reported, timeout_s=30, interval_s=0.5)
    except AssertionError:
        raise AssertionError(f"last seen: {seen}") from None


async def test_a_poison_message_counts_as_a_dead_letter(watched: Watched) -> None:
    audit = topics(watched.env.settings).audit
    producer = AIOKafkaProducer(bootstrap_servers=watched.env.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(audit, b"not an envelope")
    finally:
        await producer.stop()

    async def counted() -> bool:
        samples = await watched.scrapes.samples("fundhub_dead_letters_total")
        return any(
            service == "audit-writer" and labels == {"topic": audit} and value == 1
            for service, labels, value in samples
        )

    await wait_until(counted, timeout_s=30, interval_s=0.5)
