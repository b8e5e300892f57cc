"""Kubernetes manifests by value: names, labels, placement, DNS names in `TF_CONFIG`.

Every generated object is validated against the Kubernetes 1.30 OpenAPI schema with
`kubernetes-validate` in strict mode (unknown fields fail); no API server can run here.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import kubernetes_validate
import pytest

from tfdist.kubernetes.manifests import (
    Target,
    build_manifests,
    kubernetes_addresses,
    plan_manifests,
)
from tfdist.kubernetes.names import RunRef, label_value, pod_name, service_name
from tfdist.kubernetes.placement import JobPlacement, RolePlacement, parse_placement
from tfdist.plan import plan
from tfdist.spec import SpecError, parse_spec

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"SEED": "7"}},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 400},
        "model_dir": "gs://bucket/models/nightly/run-1",
    }
)
REF = RunRef(
    dag="nightly_retrain_gke",
    run="scheduled__2026-01-02T00-00-00-00-00",
    group="train_and_evaluate",
    launch="5f0c2a9e1b7d",
)
L4 = RolePlacement(accelerator="nvidia-l4", gpus=1, cpu="4", memory="16Gi", memory_limit="16Gi")
PLACEMENT = JobPlacement(
    default=RolePlacement(
        service_account="tfdist-trainer",
        node_pool="cpu-pool",
        cpu="2",
        memory="8Gi",
        secret_env={"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}},
    ),
    chief=L4.model_copy(update={"node_pool": "gpu-pool"}),
    worker=L4.model_copy(update={"node_pool": "gpu-spot-pool", "spot": True}),
    evaluator=RolePlacement(image="tfdist-trainer-cpu:1", env_from_secrets=("eval-settings",)),
)
TARGET = Target(namespace="ml", image="tfdist-trainer:1", placement=PLACEMENT)
SERVICE = "digits-313294bf94"


def manifests(target: Target = TARGET, ref: RunRef = REF) -> list[dict[str, Any]]:
    return plan_manifests(SPEC, target, ref)


def by_name(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objs}


def test_every_object_is_valid_against_the_kubernetes_schema() -> None:
    all_reduce = SPEC.with_overrides(
        {"cluster": {"worker": 1}, "trainer": {"command": ["python", "train.py"]}}
    )
    objs = manifests() + manifests(Target()) + plan_manifests(all_reduce, Target(), REF)
    for obj in objs:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    assert [obj["kind"] for obj in manifests()] == ["Service"] + ["Pod"] * 5


ONE_FIELD_EACH = {
    "image": "other:2",
    "node_pool": "pool-a",
    "accelerator": "nvidia-l4",
    "gpus": 2,
    "spot": True,
    "cpu": "500m",
    "memory": "1Gi",
    "cpu_limit": "1",
    "memory_limit": "2Gi",
    "service_account": "trainer",
    "secret_env": {"TOKEN": {"secret": "s", "key": "k"}},
    "env_from_secrets": ["a", "b"],
}


@pytest.mark.parametrize("field", sorted(ONE_FIELD_EACH))
def test_each_placement_field_gives_objects_valid_in_strict_mode(field: str) -> None:
    """Strict mode fails on a field Kubernetes does not know (a typo such as `hostnme`) or a
    value of the wrong type, so what each placement field adds must be spelled and placed
    right; the field must also change the pods."""
    settings: dict[str, Any] = {field: ONE_FIELD_EACH[field]}
    if field == "accelerator":
        settings["gpus"] = 1
    placed = Target(placement=parse_placement({"default": settings}))
    objs = manifests(placed)
    for obj in objs:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    assert objs[1:] != manifests(Target())[1:]


def test_headless_service_golden() -> None:
    service = manifests()[0]
    assert service["metadata"]["name"] == SERVICE
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE,
            "namespace": "ml",
            "labels": {
                "app.kubernetes.io/managed-by": "tfdist",
                "tfdist.io/job": "digits",
                "tfdist.io/dag": "nightly_retrain_gke",
                "tfdist.io/run": "scheduled__2026-01-02T00-00-00-00-00",
                "tfdist.io/scope": service["metadata"]["labels"]["tfdist.io/scope"],
                "tfdist.io/launch": "5f0c2a9e1b7d",
            },
            "annotations": {
                "tfdist.io/roles": "chief-0,worker-0,worker-1,ps-0,evaluator-0",
                "tfdist.io/scope": "nightly_retrain_gke/scheduled__2026-01-02T00-00-00-00-00/"
                "train_and_evaluate",
                "tfdist.io/spec": SPEC.model_dump_json(),
            },
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {
                "app.kubernetes.io/managed-by": "tfdist",
                "tfdist.io/job": "digits",
                "tfdist.io/scope": service["metadata"]["labels"]["tfdist.io/scope"],
                "tfdist.io/launch": "5f0c2a9e1b7d",
            },
            "ports": [{"name": "tfdist", "port": 2222, "targetPort": 2222, "protocol": "TCP"}],
        },
    }


def test_chief_pod_golden() -> None:
    pod = by_name(manifests())[f"{SERVICE}-chief-0"]
    env = {item["name"]: item for item in pod["spec"]["containers"][0].pop("env")}
    labels = pod["metadata"]["labels"]
    assert {key: labels[key] for key in ("tfdist.io/role", "tfdist.io/index", "tfdist.io/try")} == {
        "tfdist.io/role": "chief",
        "tfdist.io/index": "0",
        "tfdist.io/try": "1",
    }
    assert pod["spec"] == {
        "hostname": "chief-0",
        "subdomain": SERVICE,
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "tensorflow",
                "image": "tfdist-trainer:1",
                "command": ["python", "-m", "tfdist.runtime"],
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "ports": [{"name": "tfdist", "containerPort": 2222, "protocol": "TCP"}],
                "resources": {
                    "requests": {"cpu": "4", "memory": "16Gi"},
                    "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
                },
            }
        ],
        "serviceAccountName": "tfdist-trainer",
        "nodeSelector": {
            "cloud.google.com/gke-nodepool": "gpu-pool",
            "cloud.google.com/gke-accelerator": "nvidia-l4",
        },
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    assert list(env) == [
        "PYTHONUNBUFFERED",
        "SEED",
        "MODEL_DIR",
        "TFDIST_JOB",
        "TF_CONFIG",
        "TFDIST_LAUNCH_ID",
        "WANDB_API_KEY",
    ]
    assert env["MODEL_DIR"]["value"] == "gs://bucket/models/nightly/run-1"
    assert env["TFDIST_LAUNCH_ID"]["value"] == "5f0c2a9e1b7d"
    assert env["WANDB_API_KEY"] == {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}},
    }


def test_spot_workers_ps_and_evaluator_placement() -> None:
    pods = by_name(manifests())
    worker = pods[f"{SERVICE}-worker-1"]["spec"]
    assert worker["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "gpu-spot-pool",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-spot": "true",
    }
    assert worker["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "cloud.google.com/gke-spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        },
    ]
    ps = pods[f"{SERVICE}-ps-0"]["spec"]
    assert ps["nodeSelector"] == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert "tolerations" not in ps
    assert ps["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}}
    evaluator = pods[f"{SERVICE}-evaluator-0"]["spec"]
    container = evaluator["containers"][0]
    assert container["image"] == "tfdist-trainer-cpu:1"
    assert container["envFrom"] == [{"secretRef": {"name": "eval-settings"}}]
    assert "ports" not in container  # the evaluator serves nothing


def test_no_secret_value_is_inline() -> None:
    """Every pod takes the secret by reference to its Secret, evaluator included (its own
    placement inherits the default's `secret_env`)."""
    reference = {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    for pod in manifests()[1:]:
        env = pod["spec"]["containers"][0]["env"]
        secret = [item for item in env if item["name"] == "WANDB_API_KEY"]
        assert secret == [{"name": "WANDB_API_KEY", "valueFrom": reference}], pod["metadata"]


def test_tf_config_dns_names_are_the_ones_pods_and_service_produce() -> None:
    """`<hostname>.<subdomain>.<namespace>.svc:<port>` of each pod, as DNS resolves it."""
    for domain in (None, "cluster.local"):
        target = TARGET.model_copy(update={"cluster_domain": domain})
        service, *pods = manifests(target)
        port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["tfdist"]
        suffix = f".{domain}" if domain else ""
        produced: dict[str, list[str]] = {}
        for pod in pods:
            spec, labels = pod["spec"], pod["metadata"]["labels"]
            # The Service gives the pod its DNS name only if it selects it and is its subdomain.
            assert spec["subdomain"] == service["metadata"]["name"]
            assert service["spec"]["selector"].items() <= labels.items()
            assert pod["metadata"]["namespace"] == service["metadata"]["namespace"]
            container_ports = [p["containerPort"] for p in spec["containers"][0].get("ports", [])]
            if labels["tfdist.io/role"] == "evaluator":
                continue
            assert container_ports == [port]
            name = f"{spec['hostname']}.{spec['subdomain']}.{pod['metadata']['namespace']}.svc"
            produced.setdefault(labels["tfdist.io/role"], []).append(f"{name}{suffix}:{port}")
        for pod in pods:
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            assert json.loads(env["TF_CONFIG"])["cluster"] == produced
        assert produced["worker"] == [
            f"worker-0.{SERVICE}.ml.svc{suffix}:2222",
            f"worker-1.{SERVICE}.ml.svc{suffix}:2222",
        ]


def test_kubernetes_addresses() -> None:
    assert kubernetes_addresses(SPEC, "svc", "ns") == {
        "chief": ["chief-0.svc.ns.svc:2222"],
        "worker": ["worker-0.svc.ns.svc:2222", "worker-1.svc.ns.svc:2222"],
        "ps": ["ps-0.svc.ns.svc:2222"],
    }
    assert kubernetes_addresses(SPEC, "svc", "ns", "corp.example")["chief"] == [
        "chief-0.svc.ns.svc.corp.example:2222"
    ]


def test_a_plan_with_other_addresses_is_refused() -> None:
    job = plan(SPEC, kubernetes_addresses(SPEC, "other", "ml"))
    with pytest.raises(ValueError, match="not the DNS names of Service digits-"):
        build_manifests(job, REF, TARGET)


LONG = "x" * 250


@pytest.mark.parametrize(
    "job",
    [
        pytest.param("digits", id="short"),
        pytest.param("a" * 40, id="longest-job"),
        pytest.param("7-digits", id="digit-first"),
    ],
)
def test_names_are_dns_labels_within_63_and_unique_per_run_and_launch(job: str) -> None:
    spec = SPEC.with_overrides({"name": job, "cluster": {"worker": 12, "ps": 3, "evaluator": 1}})
    seen: set[str] = set()
    refs = [
        RunRef(dag=dag, run=run, group=group, launch=launch)
        for dag, run, group, launch in itertools.product(
            ["nightly", LONG],
            ["manual__2026-01-01T00:00:00+00:00", f"backfill__{LONG}"],
            ["train_and_evaluate", "t2"],
            ["1", "2"],
        )
    ]
    for ref in refs:
        service, *pods = plan_manifests(spec, Target(), ref)
        names = [service["metadata"]["name"]] + [pod["metadata"]["name"] for pod in pods]
        assert DNS1035_LABEL.fullmatch(names[0])
        for name in names:
            assert len(name) <= 63 and DNS1123_LABEL.fullmatch(name), name
        for pod in pods:
            assert len(pod["spec"]["hostname"]) <= 63
            for value in pod["metadata"]["labels"].values():
                assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
        assert not seen & set(names)
        seen.update(names)
    assert len(seen) == len(refs) * 18  # a Service and 17 pods each


def test_pod_name_keeps_the_service_hash_when_shortened() -> None:
    service = service_name("a" * 40, REF)
    assert service == f"{'a' * 40}-1eb0251c6b"
    assert pod_name(service, "evaluator-0") == f"{'a' * 40}-1eb0251c6b-evaluator-0"  # 63
    assert pod_name(service, "worker-10") == f"{'a' * 40}-1eb0251c6b-worker-10"
    assert pod_name(service, "evaluator-10") == f"{'a' * 39}-1eb0251c6b-evaluator-10"
    assert pod_name("digits-0123456789", "worker-3") == "digits-0123456789-worker-3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00-00-00-00-00"),
        pytest.param("-weird run id-", "weird-run-id"),
        pytest.param("", ""),
        pytest.param("::", "71546855d6", id="nothing-usable-left"),
    ],
)
def test_label_value(text: str, expected: str) -> None:
    assert label_value(text) == expected
    assert LABEL_VALUE.fullmatch(label_value(text))


def test_long_label_values_are_hashed_and_distinct() -> None:
    first, second = label_value(LONG + "a"), label_value(LONG + "b")
    assert len(first) == 63 and first != second
    assert first.startswith("x" * 52)


def test_placement_inherits_from_default_field_by_field() -> None:
    worker = PLACEMENT.for_role(SPEC.roles()[1][0])
    assert (worker.node_pool, worker.spot, worker.gpus, worker.service_account, worker.cpu) == (
        "gpu-spot-pool",
        True,
        1,
        "tfdist-trainer",
        "4",
    )
    # The same after a round trip through JSON, as backends travel between tasks.
    again = JobPlacement.model_validate_json(PLACEMENT.model_dump_json())
    assert again.for_role(SPEC.roles()[1][0]) == worker


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"worker": {"accelerator": "nvidia-l4"}},
            "worker: accelerator nvidia-l4 without gpus; set `gpus: 1`",
            id="accelerator-without-gpus",
        ),
        pytest.param({"workers": {}}, "workers: unknown field", id="unknown-role"),
        pytest.param({"chief": {"gpu": 1}}, "chief.gpu: unknown field", id="typo"),
        pytest.param({"ps": {"memory": "8 GB"}}, "ps.memory: '8 GB' is not", id="quantity"),
        pytest.param(
            {"default": {"secret_env": {"TF_CONFIG": {"secret": "s", "key": "k"}}}},
            "TF_CONFIG is set by tfdist",
            id="reserved-env",
        ),
        pytest.param(
            {"default": {"node_pool": "Bad Pool"}}, "is not a node label value", id="pool"
        ),
    ],
)
def test_bad_placement_names_the_field_and_the_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="invalid placement") as error:
        parse_placement(data)
    assert message in str(error.value)


def test_bad_target_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace name"):
        Target(namespace="ML_Team")
    with pytest.raises(ValueError, match="DNS domain"):
        Target(cluster_domain=".local")


def test_secret_env_clashing_with_trainer_env_is_refused() -> None:
    spec = SPEC.with_overrides({"trainer.env": {"WANDB_API_KEY": "inline"}})
    with pytest.raises(ValueError, match=r"WANDB_API_KEY set both in trainer\.env"):
        plan_manifests(spec, TARGET, REF)
