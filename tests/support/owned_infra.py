"""A Kafka broker and a PostgreSQL cluster that the test run owns, so a test may restart them.

The servers the session uses are shared: by every test module, and on a developer's machine by
other sessions too. An outage test never touches them. It gets its own broker and cluster
instead, on free ports under a temporary directory, run by the very code that ``fundhub up``
runs them with (``KafkaNode``, ``PostgresNode``), stopped and deleted at the end of the run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fundhub.cli.devstack import Infra, KafkaNode, PostgresNode, kafka_node
from support.processes import free_port

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
