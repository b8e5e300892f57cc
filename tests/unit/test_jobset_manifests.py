"""JobSet manifests by value: schema, hostnames in `TF_CONFIG`, Kueue, and the compiled policy.

No API server or JobSet controller can run here. Every JobSet is validated against the
vendored JobSet v0.12.0 CRD schema (`tests/schemas/`, strict: a field the CRD does not define
fails, as the API server would silently drop it), and every child Job template against the
Kubernetes 1.30 schema with `kubernetes-validate` in strict mode. The policy is proved against
`lifecycle.decide` in `test_jobset_policy.py`, on the shipped fake controllers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from jobset_schema import child_job, validate

from tfdist.kubernetes.api import JOBSETS
from tfdist.kubernetes.jobset import (
    JOB_INDEX,
    MAX_JOBSET_NAME,
    TASK_INDEX,
    JobSetOptions,
    build_jobset,
    jobset_addresses,
    jobset_name,
    plan_jobset,
    replica_env,
)
from tfdist.kubernetes.kueue import PRIORITY_CLASS, QUEUE_NAME, Kueue
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.names import RunRef
from tfdist.kubernetes.placement import JobPlacement, RolePlacement
from tfdist.plan import plan
from tfdist.spec import Role, parse_spec

PS_SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"SEED": "7"}},
        "cluster": {"worker": 3, "ps": 2, "evaluator": 1},
        "train_spec": {"max_steps": 400},
        "restart_policy": {"max_role_restarts": 4, "max_job_restarts": 2},
        "model_dir": "gs://bucket/models/nightly/run-1",
    }
)
ALL_REDUCE = PS_SPEC.with_overrides(
    {"cluster": {"worker": 2}, "trainer": {"command": ["python", "train.py"]}}
)
CHIEF_ONLY = PS_SPEC.with_overrides({"cluster": {"chief": 1}})
REF = RunRef(dag="nightly_retrain_gke", run="scheduled__2026-01-02", launch="5f0c2a9e1b7d")
L4 = RolePlacement(accelerator="nvidia-l4", gpus=1, cpu="4", memory="16Gi", memory_limit="16Gi")
TARGET = Target(
    namespace="ml",
    image="tfdist-trainer:1",
    placement=JobPlacement(
        default=RolePlacement(
            service_account="tfdist-trainer",
            secret_env={"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}},
        ),
        chief=L4.model_copy(update={"node_pool": "gpu-pool"}),
        worker=L4.model_copy(update={"node_pool": "gpu-spot-pool", "spot": True}),
    ),
)
KUEUE = JobSetOptions(
    kueue=Kueue(
        queue_name="gpu-queue",
        priority_class="nightly",
        provisioning={"provreq.kueue.x-k8s.io/maxRunDurationSeconds": "14400"},
    ),
    ttl_secs_after_finished=3600,
)


ALL = [
    (PS_SPEC, TARGET, KUEUE),
    (PS_SPEC, Target(), JobSetOptions()),
    (ALL_REDUCE, TARGET, JobSetOptions()),
    (CHIEF_ONLY, Target(namespace="ml"), KUEUE),
]


@pytest.mark.parametrize(("spec", "target", "options"), ALL)
def test_every_jobset_is_valid_against_the_crd_and_the_kubernetes_schema(
    spec: Any, target: Target, options: JobSetOptions
) -> None:
    validate(plan_jobset(spec, target, options, REF))


def test_the_strict_schema_rejects_what_the_api_server_would_drop() -> None:
    """The validator can fail: an unknown field and a wrong type are both caught."""
    jobset = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)
    typo = copy.deepcopy(jobset)
    typo["spec"]["failurePolicy"]["maxRestart"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxRestart"):
        validate(typo)
    wrong = copy.deepcopy(jobset)
    wrong["spec"]["failurePolicy"]["rules"][0]["action"] = "RestartSomething"
    with pytest.raises(jsonschema.ValidationError, match="RestartSomething"):
        validate(wrong)
    job = child_job(jobset, jobset["spec"]["replicatedJobs"][0])
    job["spec"]["template"]["spec"]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="gpus"):
        kubernetes_validate.validate(job, "1.30", strict=True)


def test_one_replicated_job_per_role_one_child_job_per_replica() -> None:
    jobset = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)
    shape = [
        (r["name"], r["replicas"], r["template"]["spec"]["parallelism"])
        for r in jobset["spec"]["replicatedJobs"]
    ]
    assert shape == [("chief", 1, 1), ("worker", 3, 1), ("ps", 2, 1), ("evaluator", 1, 1)]
    assert jobset["spec"]["network"] == {
        "enableDNSHostnames": True,
        "publishNotReadyAddresses": True,
    }


@pytest.mark.parametrize("spec", [PS_SPEC, ALL_REDUCE])
def test_tf_config_addresses_are_the_pod_hostnames_and_each_replica_sees_its_own(
    spec: Any,
) -> None:
    """The pod of replica i of role r is `<jobset>-<r>-<i>-0` in the Service `<jobset>`
    (JobSet docs, "DNS hostnames for Pods"); after Kubernetes' `$(VAR)` expansion with the
    index from the downward API, each replica's TF_CONFIG equals the plan's for that role."""
    jobset = plan_jobset(spec, TARGET, KUEUE, REF)
    name = jobset["metadata"]["name"]
    hostnames = {
        f"{name}-{r['name']}-{i}-0.{name}.ml.svc:2222"
        for r in jobset["spec"]["replicatedJobs"]
        if r["name"] != "evaluator"
        for i in range(r["replicas"])
    }
    job = plan(spec, jobset_addresses(spec, name, "ml"))
    assert {address for addresses in job.cluster.values() for address in addresses} == hostnames
    for role in job.roles:
        env = replica_env(jobset, role.role.value, role.index)
        assert json.loads(env["TF_CONFIG"]) == role.tf_config
        assert {k: v for k, v in env.items() if k not in ("TF_CONFIG", TASK_INDEX)} == {
            "PYTHONUNBUFFERED": "1",
            **{k: v for k, v in role.env.items() if k != "TF_CONFIG"},
            "TFDIST_LAUNCH_ID": REF.launch,
        }
    evaluator = (
        json.loads(replica_env(jobset, "evaluator", 0)["TF_CONFIG"])
        if spec.cluster.evaluator
        else None
    )
    assert evaluator is None or "evaluator" not in evaluator["cluster"]


def test_the_index_comes_from_the_job_index_label_defined_before_tf_config() -> None:
    jobset = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)
    worker = jobset["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["spec"]
    env = worker["containers"][0]["env"]
    names = [var["name"] for var in env]
    assert names.index(TASK_INDEX) < names.index("TF_CONFIG")
    assert env[names.index(TASK_INDEX)]["valueFrom"] == {
        "fieldRef": {"fieldPath": f"metadata.labels['{JOB_INDEX}']"}
    }
    assert '"index": $(TASK_INDEX)' in env[names.index("TF_CONFIG")]["value"]


def test_pod_names_fit_63_characters_for_the_longest_job_name() -> None:
    """The JobSet webhook rejects a JobSet whose pod names (`<jobset>-<rjob>-<i>-0-xxxxx`)
    would exceed 63 characters."""
    long = PS_SPEC.with_overrides({"name": "a" * 40, "cluster": {"worker": 9999, "ps": 1}})
    name = jobset_name(long.name, REF)
    assert len(name) == MAX_JOBSET_NAME and name[0].isalpha()
    assert len(f"{name}-worker-9998-0-abcde") <= 63
    assert len(f"{name}-evaluator-0-0-abcde") <= 63
    assert jobset_name("9lives", REF).startswith("tf-9lives-")


def test_kueue_labels_priority_and_provisioning_annotations() -> None:
    jobset = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)
    meta = jobset["metadata"]
    assert meta["labels"][QUEUE_NAME] == "gpu-queue"
    assert meta["labels"][PRIORITY_CLASS] == "nightly"
    assert meta["annotations"]["provreq.kueue.x-k8s.io/maxRunDurationSeconds"] == "14400"
    assert jobset["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "suspend" not in jobset["spec"]  # Kueue's webhook suspends it; without Kueue it runs
    plain = plan_jobset(PS_SPEC, TARGET, JobSetOptions(), REF)["metadata"]
    assert QUEUE_NAME not in plain["labels"]


def test_provisioning_annotations_must_be_kueue_provisioning_parameters() -> None:
    with pytest.raises(ValueError, match=r"write it as provreq.kueue.x-k8s.io/ValidUntilSeconds"):
        Kueue(provisioning={"ValidUntilSeconds": "60"})


def test_each_roles_pod_template_is_placed() -> None:
    jobset = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)
    pods = {
        r["name"]: r["template"]["spec"]["template"]["spec"]
        for r in jobset["spec"]["replicatedJobs"]
    }
    chief, worker = pods["chief"], pods["worker"]
    assert chief["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "gpu-pool",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
    }
    assert chief["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
    assert all(pod["serviceAccountName"] == "tfdist-trainer" for pod in pods.values())
    assert all(pod["restartPolicy"] == "Never" for pod in pods.values())
    assert all(pod["securityContext"]["runAsNonRoot"] for pod in pods.values())
    assert "ports" not in pods["evaluator"]["containers"][0]


def test_task_index_in_the_trainer_env_is_refused() -> None:
    spec = PS_SPEC.with_overrides({"trainer.env.TASK_INDEX": "1"})
    with pytest.raises(ValueError, match="TASK_INDEX is set by the JobSet backend"):
        plan_jobset(spec, TARGET)


def test_a_plan_with_other_addresses_is_refused() -> None:
    wrong = plan(PS_SPEC, jobset_addresses(PS_SPEC, "other", "ml"))
    with pytest.raises(ValueError, match="not the pod hostnames of JobSet"):
        build_jobset(wrong, REF, TARGET)


def test_success_waits_for_the_chief_and_the_evaluator() -> None:
    """A finished JobSet deletes its running Jobs: finishing on the chief alone would kill the
    evaluator before it evaluates the final checkpoint."""
    with_eval = plan_jobset(PS_SPEC, TARGET, ref=REF)["spec"]["successPolicy"]
    assert with_eval == {"operator": "All", "targetReplicatedJobs": ["chief", "evaluator"]}
    spec = PS_SPEC.with_overrides({"cluster": {"worker": 1}})
    without = plan_jobset(spec, TARGET, ref=REF)["spec"]["successPolicy"]
    assert without == {"operator": "All", "targetReplicatedJobs": ["chief"]}


BLOCK = "cloud.google.com/gce-topology-block"
HOST = "kubernetes.io/hostname"


def test_topology_asks_kueue_to_place_a_roles_pods_close_together() -> None:
    """`topology` becomes Kueue's pod-set annotation on the role's pod template (required or
    preferred), valid against the CRD; Kueue reads it into the Workload's pod set, as the fake
    cluster does."""
    from tfdist.kubernetes.placement import Topology
    from tfdist.testing.jobset_cluster import FakeJobSetCluster

    placement = TARGET.placement.model_copy(
        update={
            "default": TARGET.placement.default.model_copy(
                update={"topology": Topology(level=BLOCK)}
            ),
            "worker": TARGET.placement.worker.model_copy(  # type: ignore[union-attr]
                update={"topology": Topology(level=HOST, required=True)}
            ),
        }
    )
    target = TARGET.model_copy(update={"placement": placement})
    jobset = plan_jobset(PS_SPEC, target, KUEUE, REF)
    validate(jobset)
    annotations = {
        r["name"]: r["template"]["spec"]["template"]["metadata"].get("annotations")
        for r in jobset["spec"]["replicatedJobs"]
    }
    assert annotations == {
        "chief": {"kueue.x-k8s.io/podset-preferred-topology": BLOCK},
        "worker": {"kueue.x-k8s.io/podset-required-topology": HOST},
        "ps": {"kueue.x-k8s.io/podset-preferred-topology": BLOCK},
        "evaluator": {"kueue.x-k8s.io/podset-preferred-topology": BLOCK},
    }
    api = FakeJobSetCluster()
    api.create_object(JOBSETS, "ml", jobset)
    pod_sets = api.workload_of(jobset["metadata"]["name"])["spec"]["podSets"]
    assert {p["name"]: (p["count"], p.get("topologyRequest")) for p in pod_sets} == {
        "chief": (1, {"preferred": BLOCK}),
        "worker": (3, {"required": HOST}),
        "ps": (2, {"preferred": BLOCK}),
        "evaluator": (1, {"preferred": BLOCK}),
    }
    plain = plan_jobset(PS_SPEC, TARGET, KUEUE, REF)["spec"]["replicatedJobs"][0]
    assert "annotations" not in plain["template"]["spec"]["template"]["metadata"]


def test_topology_without_a_queue_is_refused_naming_the_fix() -> None:
    from tfdist.kubernetes.placement import parse_placement

    placement = parse_placement({"worker": {"topology": {"level": BLOCK}}})
    with pytest.raises(
        ValueError, match=r"placement: the topology of worker is honoured by Kueue.* name a queue"
    ):
        plan_jobset(PS_SPEC, TARGET.model_copy(update={"placement": placement}), ref=REF)


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        ({"level": "Block Level"}, "worker.topology.level: 'Block Level' is not a node label key"),
        ({"levle": BLOCK}, "worker.topology.levle: unknown field"),
        ({"required": True}, "worker.topology.level: Field required"),
    ],
)
def test_a_bad_topology_names_the_field(topology: dict[str, Any], message: str) -> None:
    from tfdist.kubernetes.placement import parse_placement
    from tfdist.spec import SpecError

    with pytest.raises(SpecError) as error:
        parse_placement({"worker": {"topology": topology}})
    assert message in str(error.value)


def test_the_jobset_backend_refuses_a_topology_without_a_queue_when_the_dag_is_parsed() -> None:
    from tfdist_airflow.backends import backend_from_dict

    config = {
        "kind": "jobset",
        "image": "t:1",
        "placement": {"chief": {"topology": {"level": HOST}}},
    }
    with pytest.raises(
        ValueError, match=r"topology of chief is honoured .*kueue=Kueue\(queue_name=...\)"
    ):
        backend_from_dict(config)
    queued = backend_from_dict({**config, "kueue": {"queue_name": "gpu-queue"}})
    assert queued.placement.for_role(Role.CHIEF).topology is not None


def test_every_pod_gets_the_spec_grace_period_before_sigkill() -> None:
    """SIGTERM, then SIGKILL after `restart_policy.grace_period_secs`: the chief saves in it."""
    spot = PS_SPEC.with_overrides({"restart_policy.grace_period_secs": 20})
    for spec, grace in ((PS_SPEC, 25), (spot, 20)):
        jobset = plan_jobset(spec, TARGET, KUEUE, REF)
        validate(jobset)
        pods = [r["template"]["spec"]["template"]["spec"] for r in jobset["spec"]["replicatedJobs"]]
        assert [pod["terminationGracePeriodSeconds"] for pod in pods] == [grace] * 4
