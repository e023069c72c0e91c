"""``fundhub infra up --brokers 3``, the command an operator types, starts a three-node KRaft
cluster that takes acks=all writes on replicated topics; run again it starts nothing.

The scale-out test runs the same classes on a cluster of its own; this is the command's path:
the layout, the data directory in the checkout, the variables it prints for the services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support.env import BIN
from support.owned_infra import free_port_run

from fundhub.cli.devstack.kafka_cluster import KafkaCluster, cluster_addresses, local_cluster
from fundhub.common.config import Settings


@pytest.fixture
def first_port() -> Iterator[int]:
    port = free_port_run(6)
    yield port
    cluster: KafkaCluster = local_cluster(cluster_addresses(3, port))
    cluster.stop()
    shutil.rmtree(cluster.home, ignore_errors=True)


def _infra_up(port: int, settings: Settings) -> str:
    result = subprocess.run(
        [str(BIN / "fundhub"), "infra", "up", "--brokers", "3", "--kafka-port", str(port)],
        env={**os.environ, "FUNDHUB_DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_infra_up_brokers_3_runs_a_cluster_that_replicates(
    infra: Settings, first_port: int
) -> None:
    said = _infra_up(first_port, infra)
    expected = ",".join(f"127.0.0.1:{first_port + 2 * i}" for i in range(3))
    assert f"starting Kafka at {expected}" in said, said
    exported = re.search(
        r"export FUNDHUB_KAFKA_BOOTSTRAP=(\S+) FUNDHUB_TOPIC_REPLICATION_FACTOR=3", said
    )
    assert exported is not None and exported.group(1) == expected, said

    admin = AIOKafkaAdminClient(bootstrap_servers=expected)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=expected, acks="all")
    try:
        cluster = await admin.describe_cluster()
        assert sorted(b["node_id"] for b in cluster["brokers"]) == [1, 2, 3]
        topic = f"cli-cluster-{uuid.uuid4().hex[:8]}"
        await admin.create_topics(
            [NewTopic(topic, 3, 3, topic_configs={"min.insync.replicas": "2"})]
        )
        (described,) = await admin.describe_topics([topic])
        assert all(len(p["replicas"]) == 3 for p in described["partitions"])
        await producer.start()
        written = await producer.send_and_wait(topic, b"on three brokers")
        assert written.offset == 0
    finally:
        await producer.stop()
        await admin.close()

    again = _infra_up(first_port, infra)
    assert "starting Kafka" not in again, again  # reused, not started twice
