"""The files under ``deploy/`` the checks read, and the tools that check them (fetched once into
``.tools/`` by the dev stack's own code; a check never skips for want of one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fundhub.cli.devstack.tools import ToolUnavailableError, promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "fundhub-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "fundhub-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "fundhub.json"

# A metric name in PromQL: what precedes a label matcher, a range or a closing parenthesis.
_FUNDHUB_METRIC = re.compile(r"\bfundhub_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")


def metric_families(promql: str) -> set[str]:
    """The fundhub metric families a query reads (``x_bucket`` is family ``x``)."""
    families = set()
    for name in _FUNDHUB_METRIC.findall(promql):
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        families.add(name)
    return families


def promtool_or_fail() -> Path:
    try:
        return promtool()
    except ToolUnavailableError as exc:
        pytest.fail(f"promtool is required for the alert rule checks and could not be had: {exc}")


K8S = DEPLOY / "k8s"
