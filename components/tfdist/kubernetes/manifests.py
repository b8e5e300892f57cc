"""Pure builders of the pieces of Kubernetes manifests, as plain dicts.

A role's pod spec and container (`build_pod_spec`, `build_container`: placement, identity,
resources), which `tfdist.kubernetes.jobset` puts into each replicated job's template; and,
after training, `build_export_pod`: the one-off pod that exports the final checkpoint in the
trainer image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import yaml
from pydantic import Field

from tfdist.kubernetes.names import (
    EXPORT_ROLE,
    JOB,
    LAUNCH,
    MANAGED_BY,
    ROLE,
    export_pod_name,
    label_value,
)
from tfdist.kubernetes.placement import DNS1123_SUBDOMAIN, JobPlacement, RolePlacement, matching
from tfdist.runtime.export import export_command
from tfdist.spec import Frozen, JobSpec

PORT = 2222
PORT_NAME = "tfdist"
CONTAINER = "tensorflow"
DEFAULT_IMAGE = "tfdist-trainer:latest"
RUN_AS = 1000  # the `trainer` user of docker/trainer.Dockerfile
NODE_POOL = "cloud.google.com/gke-nodepool"
ACCELERATOR = "cloud.google.com/gke-accelerator"
SPOT = "cloud.google.com/gke-spot"
GPU = "nvidia.com/gpu"

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Target(Frozen):
    """Where and how the pods of a job are created."""

    namespace: Annotated[str, matching(_NAMESPACE, "a namespace name (DNS-1123 label)", 63)] = (
        "default"
    )
    image: Annotated[str, Field(min_length=1)] = DEFAULT_IMAGE
    cluster_domain: (
        Annotated[str, matching(DNS1123_SUBDOMAIN, "a DNS domain such as cluster.local")] | None
    ) = None
    placement: JobPlacement = Field(default_factory=JobPlacement)


def dns_suffix(namespace: str, domain: str | None = None) -> str:
    """`<namespace>.svc`, plus the cluster domain when one is given."""
    return f"{namespace}.svc.{domain}" if domain else f"{namespace}.svc"


def build_export_pod(
    spec: JobSpec,
    service: str,
    launch: str,
    target: Target,
    checkpoint: str,
    out: str,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The pod that runs `python -m tfdist.runtime.export` for a launch (`service`, `launch`).

    Placed as the chief (or by `placement.export`), with its service account and secrets;
    `TFDIST_JOB` is `spec` unless `env` sets it. It is outside the launch's Service and has
    no scope label, so the step's teardown and the next launch leave it alone.
    """
    placed = target.placement.for_export()
    command = export_command("python", checkpoint, out)
    env = {
        "PYTHONUNBUFFERED": "1",
        "TFDIST_JOB": spec.model_dump_json(),
        **env,
        "TFDIST_LAUNCH_ID": launch,
    }
    labels = {
        MANAGED_BY: "tfdist",
        JOB: spec.name,
        LAUNCH: label_value(launch),
        ROLE: EXPORT_ROLE,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": export_pod_name(service, checkpoint),
            "namespace": target.namespace,
            "labels": labels,
        },
        "spec": build_pod_spec(
            placed, build_container(EXPORT_ROLE, command, env, placed, target.image)
        ),
    }


def build_pod_spec(placed: RolePlacement, container: dict[str, Any]) -> dict[str, Any]:
    """A pod's spec (a Pod's, or a Job template's in a JobSet): never restarted by the
    kubelet; non-root; the placement's identity and scheduling."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if placed.service_account:
        spec["serviceAccountName"] = placed.service_account
    selectors, tolerations = _scheduling(placed)
    if selectors:
        spec["nodeSelector"] = selectors
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def build_container(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    placed: RolePlacement,
    image: str,
    *,
    serves: bool = False,
) -> dict[str, Any]:
    """The `tensorflow` container: `env` as values, the placement's secrets as references,
    non-root, the placement's resources; the gRPC port when the role `serves`."""
    clash = sorted(set(env) & set(placed.secret_env or {}))
    if clash:
        raise ValueError(
            f"{name}: {', '.join(clash)} set both in trainer.env and in the placement's "
            "secret_env; keep one"
        )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": placed.image or image,
        "command": list(command),
        "env": [{"name": key, "value": value} for key, value in env.items()]
        + [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": source.secret, "key": source.key}}}
            for key, source in (placed.secret_env or {}).items()
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if placed.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in placed.env_from_secrets]
    if serves:
        container["ports"] = [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}]
    resources = _resources(placed)
    if resources:
        container["resources"] = resources
    return container


def _resources(placed: RolePlacement) -> dict[str, dict[str, str]]:
    requests = {"cpu": placed.cpu, "memory": placed.memory}
    limits = {"cpu": placed.cpu_limit, "memory": placed.memory_limit}
    if placed.gpus:
        limits[GPU] = str(placed.gpus)
    out = {
        kind: {key: value for key, value in values.items() if value is not None}
        for kind, values in (("requests", requests), ("limits", limits))
    }
    return {kind: values for kind, values in out.items() if values}


def _scheduling(placed: RolePlacement) -> tuple[dict[str, str], list[dict[str, str]]]:
    selectors: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    if placed.node_pool:
        selectors[NODE_POOL] = placed.node_pool
    if placed.accelerator:
        selectors[ACCELERATOR] = placed.accelerator
    if placed.gpus:
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if placed.spot:
        selectors[SPOT] = "true"
        tolerations.append(
            {"key": SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        )
    return selectors, tolerations


class _Dumper(yaml.SafeDumper):
    """Lists of numbers (such as exit codes) flow; a repeated value is written out again."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    numbers = bool(data) and all(isinstance(item, int) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=numbers)


_Dumper.add_representer(list, _list)


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, as `kubectl apply -f -` reads it."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, explicit_start=True)
