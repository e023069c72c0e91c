"""``deploy/prometheus``: the rules load in Prometheus's own checker, every alert has cases in
``promtool test rules`` that make it fire and keep it quiet, and the cases pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from support.deploy_files import RULE_TESTS, RULES, promtool_or_fail


@pytest.fixture(scope="module")
def promtool() -> Path:
    return promtool_or_fail()


def alerts() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["alert"] for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_rule_cases_pass(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alerts()) - fired == set()
    assert set(alerts()) - quiet == set()
