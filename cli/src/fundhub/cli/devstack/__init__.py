"""The local dev stack: Kafka and Postgres from this machine, and a supervisor for services."""

from fundhub.cli.devstack.infra import (
    Infra,
    InfraError,
    ensure_infra,
    ensure_infra_async,
    stop_local_infra,
)
from fundhub.cli.devstack.kafka import KafkaNode, KafkaNodeError, kafka_node
from fundhub.cli.devstack.postgres import PostgresNode, PostgresNodeError, postgres_node

__all__ = [
    "Infra",
    "InfraError",
    "KafkaNode",
    "KafkaNodeError",
    "PostgresNode",
    "PostgresNodeError",
    "ensure_infra",
    "ensure_infra_async",
    "kafka_node",
    "postgres_node",
    "stop_local_infra",
]
