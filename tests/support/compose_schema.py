"""The Compose specification's JSON schema, as compose-go (the library Docker Compose reads
files with) publishes it in its Go module, fetched through the Go module proxy once into
``.tools/`` like the Kubernetes schemas (``k8s_schemas``)."""

from __future__ import annotations

import json
from typing import Any

from fundhub.cli.devstack.tools import go_module

COMPOSE_GO = ("github.com/compose-spec/compose-go/v2", "v2.4.9")


def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (go_module(*COMPOSE_GO) / "schema" / "compose-spec.json").read_text()
    )
    return schema
