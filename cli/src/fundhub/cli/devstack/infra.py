"""Kafka and Postgres for a dev or test run: reuse what is reachable, start what is not."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fundhub.cli.devstack.blocking import run_sync
from fundhub.cli.devstack.endpoints import HostPort, parse_bootstrap, parse_dsn, same_address
from fundhub.cli.devstack.kafka import KafkaNode, kafka_node, probe_kafka
from fundhub.cli.devstack.kafka_cluster import (
    KafkaCluster,
    is_cluster_layout,
    local_cluster,
    running_clusters,
)
from fundhub.cli.devstack.paths import data_dir
from fundhub.cli.devstack.postgres import PostgresNode, postgres_node, probe_postgres
from fundhub.common.config import Settings, get_settings

log = logging.getLogger("fundhub.devstack")

Progress = Callable[[str], None]


class InfraError(RuntimeError):
    pass


@dataclass
class Infra:
    """What a run uses; ``stop()`` stops only what ``ensure_infra`` itself started.

    ``kafka`` / ``postgres`` are the local nodes when the settings point at them and this
    checkout runs them (so a test may stop and restart the broker); None for external ones."""

    kafka_bootstrap: str
    database_url: str
    kafka: KafkaNode | KafkaCluster | None
    postgres: PostgresNode | None
    started_kafka: bool = False
    started_postgres: bool = False

    def stop(self) -> None:
        if self.started_kafka and self.kafka is not None:
            self.kafka.stop()
            self.started_kafka = False
        if self.started_postgres and self.postgres is not None:
            self.postgres.stop()
            self.started_postgres = False


@contextlib.contextmanager
def _infra_lock() -> Iterator[None]:
    """One process at a time decides what to start (parallel test sessions, two terminals)."""
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "infra.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_external(name: str, probe: Callable[[], bool], where: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise InfraError(f"{name} at {where} is not reachable (waited {timeout_s:.0f}s)")
        time.sleep(0.5)


def local_kafka(brokers: list[HostPort]) -> KafkaNode | KafkaCluster | None:
    """The checkout's Kafka that a bootstrap list names, if any: the single node at
    127.0.0.1:9092, or a cluster laid out as ``fundhub infra up --brokers N`` lays it out."""
    single = kafka_node()
    if len(brokers) == 1 and same_address(brokers[0], single.address):
        return single
    if is_cluster_layout(brokers):
        return local_cluster(brokers)
    return None


def ensure_infra(
    settings: Settings | None = None,
    *,
    timeout_s: float = 180.0,
    external_timeout_s: float = 30.0,
    progress: Progress | None = None,
) -> Infra:
    """Make Kafka and Postgres ready for ``settings``.

    If the settings name the local default nodes (127.0.0.1:9092, 127.0.0.1:55432) and nothing
    answers there, start them in the background, wait until they serve requests, and create the
    DSN's role and database. A bootstrap list of loopback brokers at ports p, p+2, p+4... is
    the checkout's local cluster (``fundhub infra up --brokers 3``), started the same way. Any
    other address is external: wait for it, start nothing."""
    settings = settings or get_settings()
    say = progress or log.info
    local_pg = postgres_node()
    pg_target = parse_dsn(settings.database_url)
    managed = local_kafka(parse_bootstrap(settings.kafka_bootstrap))
    manage_kafka = managed is not None
    kafka = managed if managed is not None else kafka_node()
    manage_pg = pg_target.address is not None and same_address(pg_target.address, local_pg.address)
    infra = Infra(settings.kafka_bootstrap, settings.database_url, None, None)
    with _infra_lock():
        try:
            if manage_kafka and not kafka.is_running():
                if not kafka.jars_ready():
                    say("fetching the Kafka jars with Maven (first run only)")
                say(f"starting Kafka at {kafka.bootstrap} (data in {kafka.home})")
                kafka.start(wait=False)  # the JVM warms up while Postgres starts
                infra.started_kafka = True
            if manage_pg:
                if not local_pg.is_running():
                    say(f"starting PostgreSQL at {local_pg.address} (data in {local_pg.home})")
                    infra.started_postgres = True  # before waiting: a failure must stop it
                    local_pg.start(wait=False, timeout_s=timeout_s)
                local_pg.wait_ready(timeout_s)
                if infra.started_postgres or local_pg.pid() is not None:
                    local_pg.ensure_database(pg_target.user, pg_target.database)
                    infra.postgres = local_pg
            else:
                _wait_external(
                    "PostgreSQL",
                    lambda: run_sync(lambda: probe_postgres(settings.database_url)),
                    str(pg_target.address or "its unix socket"),
                    external_timeout_s,
                )
            if manage_kafka:
                kafka.wait_ready(timeout_s)
                if infra.started_kafka or kafka.pid() is not None:
                    infra.kafka = kafka
            else:
                _wait_external(
                    "Kafka",
                    lambda: run_sync(lambda: probe_kafka(settings.kafka_bootstrap)),
                    settings.kafka_bootstrap,
                    external_timeout_s,
                )
        except BaseException:
            # Leave nothing half-started behind (including on Ctrl-C).
            if infra.started_kafka:
                infra.kafka = kafka
            if infra.started_postgres:
                infra.postgres = local_pg
            infra.stop()
            raise
    return infra


async def ensure_infra_async(
    settings: Settings | None = None, *, timeout_s: float = 180.0, progress: Progress | None = None
) -> Infra:
    """``ensure_infra`` for async callers (runs in a worker thread, the loop stays free)."""
    return await asyncio.to_thread(ensure_infra, settings, timeout_s=timeout_s, progress=progress)


def stop_local_infra(progress: Progress | None = None) -> list[str]:
    """Stop the default local Kafka and Postgres if this checkout runs them (``make down``)."""
    say = progress or log.info
    stopped: list[str] = []
    local_pg = postgres_node()
    kafkas: list[KafkaNode | KafkaCluster] = [kafka_node(), *running_clusters()]
    for kafka in kafkas:
        if kafka.pid() is not None:
            say(f"stopping Kafka at {kafka.bootstrap}")
            kafka.stop()
            stopped.append("kafka")
    if local_pg.pid() is not None:
        say(f"stopping PostgreSQL at {local_pg.address}")
        local_pg.stop()
        stopped.append("postgres")
    return stopped
