"""A Kafka broker and a PostgreSQL cluster that the test run owns, so a test may restart them.

The servers the session uses are shared: by every test module, and on a developer's machine by
other sessions too. An outage test never touches them. It gets its own broker and cluster
instead, on free ports under a temporary directory, run by the very code that ``fundhub up``
runs them with (``KafkaNode``, ``PostgresNode``), stopped and deleted at the end of the run.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fundhub.cli.devstack import Infra, KafkaNode, PostgresNode, kafka_node
from fundhub.cli.devstack.endpoints import HostPort
from fundhub.cli.devstack.kafka_cluster import KafkaCluster, cluster_nodes
from support.processes import free_port, reserve_ports

USER = "fundhub"


def owned_nodes(root: Path) -> tuple[KafkaNode, PostgresNode]:
    """The two servers under ``root`` on free ports, sized for a test (small heap and buffers);
    the broker's jars are the checkout's own (fetched once, shared)."""
    checkout = kafka_node()
    checkout.ensure_jars()
    kafka = KafkaNode(
        home=root / "kafka",
        deploy=checkout.deploy,
        port=free_port(),
        controller_port=free_port(),
        heap_min="128m",
        heap_max="512m",
        jars=checkout.libs_dir,
    )
    postgres = PostgresNode(
        home=root / "postgres", port=free_port(), shared_buffers="128MB", max_connections=100
    )
    return kafka, postgres


def ensure_running(infra: Infra) -> None:
    """Start whichever of the two is down (a test that failed mid-outage may leave one so)."""
    assert infra.kafka is not None and infra.postgres is not None
    infra.kafka.start(wait=False)
    infra.postgres.start()
    infra.postgres.ensure_database(USER, USER)
    infra.kafka.wait_ready()


@contextmanager
def owned_infra() -> Iterator[Infra]:
    """Both servers started, as an ``Infra`` whose ``stop()`` stops them; the directory goes
    with them. Not under pytest's temporary directory: the cluster runs as the ``postgres``
    user when the tests run as root, and pytest's directory is private to root."""
    root = Path(tempfile.mkdtemp(prefix="fundhub-owned-"))
    kafka, postgres = owned_nodes(root)
    infra = Infra(
        kafka_bootstrap=kafka.bootstrap,
        database_url=f"postgresql://{USER}@{postgres.host}:{postgres.port}/{USER}",
        kafka=kafka,
        postgres=postgres,
        started_kafka=True,
        started_postgres=True,
    )
    try:
        ensure_running(infra)
        yield infra
    finally:
        infra.stop()
        shutil.rmtree(root, ignore_errors=True)


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive free ports (a cluster's brokers and controllers)."""
    for _ in range(100):
        first = free_port()
        rest = []
        for port in range(first + 1, first + length):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
            rest.append(port)
        if len(rest) == length - 1:
            reserve_ports(rest)  # never given to a service while a broker is down
            return first
    raise AssertionError(f"no {length} consecutive free ports")


@contextmanager
def owned_cluster(brokers: int = 3) -> Iterator[KafkaCluster]:
    """A KRaft cluster of ``brokers`` nodes of the test's own, started (``fundhub infra up
    --brokers 3`` runs the same code), stopped and deleted on the way out."""
    root = Path(tempfile.mkdtemp(prefix="fundhub-cluster-"))
    checkout = kafka_node()
    checkout.ensure_jars()
    first = free_port_run(2 * brokers)
    addresses = [HostPort("127.0.0.1", first + 2 * i) for i in range(brokers)]
    cluster = cluster_nodes(
        root, addresses, deploy=checkout.deploy, jars=checkout.libs_dir,
        heap_min="128m", heap_max="384m", jvm_options=("-XX:TieredStopAtLevel=1",),
    )  # fmt: skip
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()  # its data goes with it: nothing to shut down cleanly for
        shutil.rmtree(root, ignore_errors=True)
