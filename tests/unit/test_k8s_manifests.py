"""Pod templates by value: placement, identity, resources and secrets of each role's pod, as
the JobSet's replicated jobs carry them; label values.

Every JobSet is validated against the JobSet v0.12.0 CRD schema and its child Job templates
against the Kubernetes 1.30 OpenAPI schema (`jobset_schema.validate`, strict: unknown fields
fail); no API server can run here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from jobset_schema import validate

from tfdist.kubernetes.jobset import plan_jobset
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.names import RunRef, label_value
from tfdist.kubernetes.placement import JobPlacement, RolePlacement, parse_placement
from tfdist.spec import SpecError, parse_spec

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


def pods(target: Target = TARGET, spec: Any = SPEC) -> dict[str, dict[str, Any]]:
    """Each role's pod template (its `spec`), from a JobSet valid against the CRD."""
    jobset = plan_jobset(spec, target, ref=REF)
    validate(jobset)
    return {
        r["name"]: r["template"]["spec"]["template"]["spec"]
        for r in jobset["spec"]["replicatedJobs"]
    }


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
def test_each_placement_field_gives_templates_valid_in_strict_mode(field: str) -> None:
    """Strict mode fails on a field Kubernetes does not know (a typo such as `hostnme`) or a
    value of the wrong type, so what each placement field adds must be spelled and placed
    right; the field must also change the pods."""
    settings: dict[str, Any] = {field: ONE_FIELD_EACH[field]}
    if field == "accelerator":
        settings["gpus"] = 1
    placed = Target(placement=parse_placement({"default": settings}))
    assert pods(placed) != pods(Target())


def test_chief_pod_template_golden() -> None:
    pod = pods()["chief"]
    env = {item["name"]: item for item in pod["containers"][0].pop("env")}
    assert pod == {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 25,  # restart_policy.grace_period_secs
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
    assert list(env) == [  # TASK_INDEX first: TF_CONFIG expands it
        "TASK_INDEX",
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
    placed = pods()
    worker = placed["worker"]
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
    ps = placed["ps"]
    assert ps["nodeSelector"] == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert "tolerations" not in ps
    assert ps["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}}
    evaluator = placed["evaluator"]
    container = evaluator["containers"][0]
    assert container["image"] == "tfdist-trainer-cpu:1"
    assert container["envFrom"] == [{"secretRef": {"name": "eval-settings"}}]
    assert "ports" not in container  # the evaluator serves nothing


def test_no_secret_value_is_inline() -> None:
    """Every pod takes the secret by reference to its Secret, evaluator included (its own
    placement inherits the default's `secret_env`)."""
    reference = {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    for role, pod in pods().items():
        env = pod["containers"][0]["env"]
        secret = [item for item in env if item["name"] == "WANDB_API_KEY"]
        assert secret == [{"name": "WANDB_API_KEY", "valueFrom": reference}], role


LONG = "x" * 250


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
        plan_jobset(spec, TARGET, ref=REF)
