"""``docker-compose.yml``: valid against the Compose specification's schema (the one compose-go
validates with), and true to the stack ``fundhub up`` runs: the same services, each started
with the same entry point, the master key only where ``fundhub up`` passes it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from support.compose_schema import compose_schema
from support.deploy_files import DEPLOY

from fundhub.cli.devstack.stack import MASTER_KEY, env_for, service_specs
from fundhub.cli.devstack.tools import ToolUnavailableError
from fundhub.common.config import Settings

COMPOSE = DEPLOY.parent / "docker-compose.yml"
INFRA = {"kafka", "postgres"}
ONE_SHOT = {"migrate": "migrate", "dev-init": "dev-init"}  # `fundhub <command>`, then exit


@pytest.fixture(scope="module")
def validator() -> Any:
    try:
        return jsonschema_rs.validator_for(compose_schema())
    except ToolUnavailableError as exc:
        pytest.fail(f"the Compose schema is required and could not be had: {exc}")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys resolved
    return document


def errors(validator: Any, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_file_is_valid_against_the_compose_specification(validator: Any) -> None:
    assert errors(validator, compose()) == []


def test_a_misspelt_or_mistyped_field_is_refused(validator: Any) -> None:
    misspelt = copy.deepcopy(compose())
    misspelt["services"]["gateway"]["depend_on"] = misspelt["services"]["gateway"].pop("depends_on")
    assert any("depend_on" in e for e in errors(validator, misspelt))
    mistyped = copy.deepcopy(compose())
    mistyped["services"]["gateway"]["depends_on"] = {"kafka": {"condition": "service_happy"}}
    assert errors(validator, mistyped) != []
    unknown_top = {**compose(), "servces": {}}
    assert errors(validator, unknown_top) != []


def test_the_same_services_as_fundhub_up_with_the_same_secrets() -> None:
    services = compose()["services"]
    specs = {spec.name: spec for spec in service_specs(Settings(env="dev"), {})}
    assert set(services) == set(specs) | INFRA | set(ONE_SHOT)
    for name, spec in specs.items():
        command = services[name]["command"]
        assert Path(command[0]).name == Path(spec.argv[0]).name, name
        environment = services[name]["environment"]
        needs_key = env_for(name, {MASTER_KEY: "set"})[MASTER_KEY] == "set"
        assert (MASTER_KEY in environment) == needs_key, name
        # Every peer is reached by its service name, never by a loopback address.
        assert not [v for v in environment.values() if "127.0.0.1" in str(v)], name
    for name, command in ONE_SHOT.items():
        assert services[name]["command"] == ["fundhub", command]
        assert services[name]["restart"] == "no"
