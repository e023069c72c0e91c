"""``deploy/k8s``: every manifest valid against the Kubernetes API's and the operators' own
schemas (kubeconform, strict), and consistent with the code: a KafkaTopic per topic, KEDA
scaling the groups the services really consume with, probes and a disruption budget for every
Deployment.

Strimzi's CRDs are published neither in a Go module nor in a Maven artifact, so kubeconform
skips Kafka, KafkaNodePool and KafkaTopic (and only those); the checks below hold them to the
code instead."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.deploy_files import K8S
from support.k8s_schemas import build, location

from fundhub.audit.consumer import CONSUMER as AUDIT_GROUP
from fundhub.bank_transfers.apply import CONSUMER as NOTIFY_GROUP
from fundhub.cli.devstack.tools import ToolUnavailableError, kubeconform
from fundhub.common.config import Settings
from fundhub.common.topics import topics
from fundhub.payouts.commands import CONSUMER as PAYOUT_COMMANDS_GROUP
from fundhub.webhooks.store import CONSUMER as CALLBACKS_GROUP

STRIMZI = {"Kafka", "KafkaNodePool", "KafkaTopic"}
NAMES = topics(Settings(topic_namespace="fundhub"))
PARTITIONS = 6


@pytest.fixture(scope="module")
def validator() -> list[str]:
    try:
        return [
            str(kubeconform()),
            "-strict",
            "-verbose",  # list valid and skipped resources too
            "-output",
            "json",
            "-schema-location",
            location(build()),
            "-skip",
            ",".join(sorted(STRIMZI)),
        ]
    except ToolUnavailableError as exc:
        pytest.fail(f"kubeconform and the schemas are required and could not be had: {exc}")


def resources() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def validate(command: list[str], target: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*command, str(target)], capture_output=True, text=True, timeout=120, check=False
    )
    return list(json.loads(result.stdout)["resources"])


def test_every_manifest_is_valid_against_its_schema(validator: list[str]) -> None:
    checked = validate(validator, K8S)
    by_status = Counter(r["status"] for r in checked)
    invalid = [r for r in checked if r["status"] not in ("statusValid", "statusSkipped")]
    assert invalid == []
    skipped = {r["kind"] for r in checked if r["status"] == "statusSkipped"}
    assert skipped == STRIMZI
    assert by_status["statusValid"] == sum(1 for r in resources() if r["kind"] not in STRIMZI)


def test_a_misspelt_field_is_refused(validator: list[str], tmp_path: Path) -> None:
    text = (K8S / "41-notify-ingest.yaml").read_text()
    (tmp_path / "typo.yaml").write_text(text.replace("readinessProbe:", "readynessProbe:", 1))
    (tmp_path / "cnpg.yaml").write_text(
        (K8S / "10-postgres.yaml").read_text().replace("instances: 3", "instance: 3")
    )
    statuses = {r["kind"]: r["status"] for r in validate(validator, tmp_path)}
    assert statuses["Deployment"] == "statusInvalid"
    assert statuses["Cluster"] == "statusInvalid"


def test_every_topic_has_a_replicated_kafka_topic() -> None:
    declared = {r["spec"]["topicName"]: r["spec"] for r in resources() if r["kind"] == "KafkaTopic"}
    assert set(declared) == set(NAMES.all())
    for spec in declared.values():
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2
        assert spec["partitions"] == PARTITIONS
    (kafka,) = [r for r in resources() if r["kind"] == "Kafka"]
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    (pool,) = [r for r in resources() if r["kind"] == "KafkaNodePool"]
    assert pool["spec"]["replicas"] == 3


def test_consumers_scale_on_the_lag_of_the_groups_they_consume_with() -> None:
    expected = {
        "notify-ingest": (NAMES.bank_transfer_notify, NAMES.group(NOTIFY_GROUP)),
        "payment-worker": (NAMES.payout_commands, NAMES.group(PAYOUT_COMMANDS_GROUP)),
        "callback-dispatcher": (NAMES.client_callbacks, NAMES.group(CALLBACKS_GROUP)),
        "audit-writer": (NAMES.audit, NAMES.group(AUDIT_GROUP)),
    }
    scaled = {
        r["spec"]["scaleTargetRef"]["name"]: r["spec"]
        for r in resources()
        if r["kind"] == "ScaledObject"
    }
    assert set(scaled) == set(expected)
    for name, spec in scaled.items():
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert (meta["topic"], meta["consumerGroup"]) == expected[name]
        assert spec["maxReplicaCount"] <= PARTITIONS  # a replica past that would idle


def test_every_deployment_has_probes_and_a_disruption_budget() -> None:
    deployments = [r for r in resources() if r["kind"] == "Deployment"]
    budgets = [r for r in resources() if r["kind"] == "PodDisruptionBudget"]
    assert len(deployments) == 6
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            secrets = [e for e in container["env"] if "valueFrom" in e]
            assert all("secretKeyRef" in e["valueFrom"] for e in secrets)
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert any(b["spec"]["selector"]["matchLabels"] == labels for b in budgets)
    # Secrets come from the platform's store, never from this repository.
    assert not [r for r in resources() if r["kind"] == "Secret"]
