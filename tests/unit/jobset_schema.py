"""Validation of JobSets as an API server with the JobSet v0.12.0 CRD would do it, strictly.

The vendored CRD (`tests/schemas/`, see its README for source and licence) gives the
`openAPIV3Schema` of `jobset.x-k8s.io/v1alpha2`; `strict` adds `additionalProperties: false`
wherever the schema lists properties, so a field the API server would silently drop fails.
Each child Job template is validated against the Kubernetes 1.30 schema (`kubernetes-validate`,
strict). The CRD's CEL rules (immutability, startupPolicy vs dependsOn) are not evaluated.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRD = Path(__file__).parents[1] / "schemas" / "jobset.x-k8s.io_jobsets.v0.12.0.yaml"


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties and does
    not preserve unknown fields."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def jobset_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def child_job(jobset: dict[str, Any], replicated: dict[str, Any]) -> dict[str, Any]:
    """A child Job as the JobSet controller makes it from the replicated job's template."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{jobset['metadata']['name']}-{replicated['name']}-0"},
        **copy.deepcopy(replicated["template"]),
    }


def validate(jobset: dict[str, Any]) -> None:
    jobset_validator().validate(jobset)
    for replicated in jobset["spec"]["replicatedJobs"]:
        kubernetes_validate.validate(child_job(jobset, replicated), "1.30", strict=True)
