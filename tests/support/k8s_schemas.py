"""JSON schemas for kubeconform, made from what the projects publish in their Go modules: the
Kubernetes API's OpenAPI v3 documents (``k8s.io/kubernetes``, ``api/openapi-spec/v3``) and the
operators' CRDs (CloudNativePG, KEDA). Strict: an object that lists its properties accepts no
others (a misspelt field fails), as the API server's own field validation does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fundhub.cli.devstack.tools import go_module, tools_dir

KUBERNETES = ("k8s.io/kubernetes", "v1.31.4")
# (module, version, CRD files under the module)
OPERATORS = (
    (
        "github.com/cloudnative-pg/cloudnative-pg",
        "v1.24.1",
        ("config/crd/bases/postgresql.cnpg.io_clusters.yaml",),
    ),
    (
        "github.com/kedacore/keda/v2",
        "v2.15.1",
        (
            "config/crd/bases/keda.sh_scaledobjects.yaml",
            "config/crd/bases/keda.sh_triggerauthentications.yaml",
        ),
    ),
)
# The API groups the manifests use (one OpenAPI document each).
API_DOCUMENTS = (
    "api__v1_openapi.json",
    "apis__apps__v1_openapi.json",
    "apis__batch__v1_openapi.json",
    "apis__policy__v1_openapi.json",
    "apis__networking.k8s.io__v1_openapi.json",
)
# kubeconform's template: core kinds land in v1/, the others in their group's directory.
LOCATION = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def build() -> Path:
    """The schema directory (made once per set of versions); pass ``location(dir)`` to
    kubeconform's ``-schema-location``."""
    name = "-".join(v for _, v, *_ in (KUBERNETES, *OPERATORS))
    home = tools_dir() / "k8s-schemas" / name
    if (home / ".complete").is_file():
        return home
    spec = go_module(*KUBERNETES) / "api" / "openapi-spec" / "v3"
    for document in API_DOCUMENTS:
        schemas = json.loads((spec / document).read_text())["components"]["schemas"]
        shared = {"components": {"schemas": strict(schemas)}}
        for key, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", ()):
                if gvk["kind"].endswith("List") or key.startswith("io.k8s.apimachinery"):
                    continue
                out = home / (gvk["group"] or gvk["version"])
                out.mkdir(parents=True, exist_ok=True)
                target = out / f"{gvk['kind'].lower()}_{gvk['version']}.json"
                target.write_text(json.dumps({"$ref": f"#/components/schemas/{key}", **shared}))
    for module, version, files in OPERATORS:
        root = go_module(module, version)
        for file in files:
            crd = yaml.safe_load((root / file).read_text())
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for served in crd["spec"]["versions"]:
                schema = strict(served["schema"]["openAPIV3Schema"])
                out = home / group
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{kind.lower()}_{served['name']}.json").write_text(json.dumps(schema))
    (home / ".complete").write_text("")
    return home


def location(home: Path) -> str:
    return f"{home}/{LOCATION}"
