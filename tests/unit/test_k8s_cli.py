"""`tfdist plan SPEC --backend jobset`: the JobSet as YAML, with no cluster to talk to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobset_schema import validate

from tfdist.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "dags" / "specs" / "digits.yaml")
MODEL_DIR = "gs://tfdist-test/models"
PLAN = ["plan", SPEC, "--backend", "jobset", "--set", f"model_dir={MODEL_DIR}"]
PLACEMENT = """
default: {service_account: tfdist-trainer, node_pool: cpu-pool}
chief: {node_pool: gpu-pool, accelerator: nvidia-l4, gpus: 1}
worker: {node_pool: gpu-spot-pool, accelerator: nvidia-l4, gpus: 1, spot: true}
"""


def plan_yaml(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main([*PLAN, *args]) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


def test_the_placement_file_places_each_roles_pod_template(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tfdist.kubernetes.jobset import replica_env

    placement = tmp_path / "placement.yaml"
    placement.write_text(PLACEMENT)
    (jobset,) = plan_yaml(
        capsys, "--namespace", "ml", "--image", "trainer:1", "--placement", str(placement)
    )
    validate(jobset)
    templates = {
        r["name"]: r["template"]["spec"]["template"]["spec"]
        for r in jobset["spec"]["replicatedJobs"]
    }
    assert templates["chief"]["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "gpu-pool",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
    }
    assert templates["ps"]["nodeSelector"] == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert {t["serviceAccountName"] for t in templates.values()} == {"tfdist-trainer"}
    assert {t["containers"][0]["image"] for t in templates.values()} == {"trainer:1"}
    name = jobset["metadata"]["name"]
    tf_config = json.loads(replica_env(jobset, "chief", 0)["TF_CONFIG"])
    assert tf_config["cluster"]["chief"] == [f"{name}-chief-0-0.{name}.ml.svc:2222"]


def test_cluster_domain_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from tfdist.kubernetes.jobset import replica_env

    (jobset,) = plan_yaml(capsys, "--cluster-domain", "cluster.local")
    chief = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert chief["containers"][0]["image"] == "tfdist-trainer:latest"
    name = jobset["metadata"]["name"]
    assert json.loads(replica_env(jobset, "chief", 0)["TF_CONFIG"])["cluster"]["ps"] == [
        f"{name}-ps-0-0.{name}.default.svc.cluster.local:2222"
    ]


def test_the_retired_kubernetes_backend_is_refused_naming_jobset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", SPEC, "--backend", "kubernetes", "--set", f"model_dir={MODEL_DIR}"]) == 2
    err = capsys.readouterr().err
    assert "--backend kubernetes (a pod per role, restarted by Airflow) is no longer offered" in err
    assert "use --backend jobset" in err
    assert "kubectl apply --server-side -f https://github.com/kubernetes-sigs/jobset/" in err


def test_the_local_plan_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", SPEC]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "chief-0",
        "worker-0",
        "worker-1",
        "ps-0",
        "evaluator-0",
    ]
    assert "127.0.0.1:" in lines[0]


@pytest.mark.parametrize(
    ("args", "placement", "message"),
    [
        pytest.param(
            ["--namespace", "ML"], None, "--namespace: 'ML' is not a namespace name", id="ns"
        ),
        pytest.param(
            [],
            "worker: {accelerator: nvidia-l4}",
            "worker: accelerator nvidia-l4 without gpus; set `gpus: 1`",
            id="gpus",
        ),
        pytest.param([], "chief: {gpu: 1}", "chief.gpu: unknown field", id="typo"),
    ],
)
def test_bad_options_exit_2_naming_the_fix(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    placement: str | None,
    message: str,
) -> None:
    if placement is not None:
        path = tmp_path / "placement.yaml"
        path.write_text(placement)
        args = [*args, "--placement", str(path)]
    assert main([*PLAN, *args]) == 2
    assert message in capsys.readouterr().err


def test_a_local_model_dir_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Each pod would write its own disk: the evaluator would wait for checkpoints forever."""
    assert main(["plan", SPEC, "--backend", "jobset"]) == 2
    assert capsys.readouterr().err == (
        "model_dir: '/tmp/tfdist/models' is a local path, but on the jobset backend every "
        "pod has its own disk: the evaluator, the gate and the export would not see the "
        "chief's checkpoints, and a restarted pod would start over; use gs://BUCKET/PREFIX\n"
    )


def test_missing_placement_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--placement", "/nonexistent"]) == 2
    assert "cannot read placement /nonexistent" in capsys.readouterr().err


def test_the_command_loads_no_kubernetes_client() -> None:
    """Planning for Kubernetes is pure: the `kubernetes` client is not even imported."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "tfdist.cli",
            *PLAN,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    heavy = {name for name in imported if name.split(".")[0] in {"kubernetes", "google", "airflow"}}
    assert heavy == set()
    assert [doc["kind"] for doc in yaml.safe_load_all(result.stdout)] == ["JobSet"]


# -- tfdist plan --backend jobset -----------------------------------------------------------
JOBSET_PLAN = PLAN


def test_jobset_plan_prints_one_valid_jobset_whose_hostnames_are_the_tf_config_addresses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """chief 1, worker 3, ps 2, evaluator 1: one JobSet, valid against the JobSet CRD schema
    (and its pod templates against Kubernetes'), every TF_CONFIG address a pod hostname, and
    the policies compiled from the lifecycle (proved case by case in test_jobset_policy)."""
    from tfdist.kubernetes.jobset import replica_env
    from tfdist.kubernetes.jobset_policy import failure_policy, success_policy
    from tfdist.spec import load_spec

    cluster = '--set=cluster={"worker": 3, "ps": 2, "evaluator": 1}'
    assert main([*JOBSET_PLAN, cluster, "--namespace", "ml", "--queue", "gpu-queue"]) == 0
    jobset, queue = list(yaml.safe_load_all(capsys.readouterr().out))
    validate(jobset)
    assert queue == {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": "gpu-queue", "namespace": "ml"},
        "spec": {"clusterQueue": "cluster-queue"},
    }
    name = jobset["metadata"]["name"]
    hostnames = {
        f"{name}-{r['name']}-{i}-0.{name}.ml.svc:2222"
        for r in jobset["spec"]["replicatedJobs"]
        for i in range(r["replicas"])
        if r["name"] != "evaluator"
    }
    addresses = set()
    for role, count in (("chief", 1), ("worker", 3), ("ps", 2), ("evaluator", 1)):
        for index in range(count):
            tf_config = json.loads(replica_env(jobset, role, index)["TF_CONFIG"])
            assert tf_config["task"] == {"type": role, "index": index}
            addresses |= {a for names in tf_config["cluster"].values() for a in names}
    assert addresses == hostnames and len(hostnames) == 6
    spec = load_spec(SPEC).with_overrides(
        {"cluster": {"worker": 3, "ps": 2, "evaluator": 1}, "model_dir": MODEL_DIR}
    )
    assert jobset["spec"]["failurePolicy"] == failure_policy(spec)
    assert jobset["spec"]["successPolicy"] == success_policy(spec)


def test_jobset_plan_without_a_queue_prints_the_jobset_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(JOBSET_PLAN) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [doc["kind"] for doc in docs] == ["JobSet"]
    assert "kueue.x-k8s.io/queue-name" not in docs[0]["metadata"]["labels"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provisioning", "ValidUntilSeconds=60"], "write it as provreq.kueue.x-k8s.io/"),
        (["--provisioning", "novalue"], "--provisioning 'novalue': write it as KEY=VALUE"),
        (["--queue", "GPU Queue"], "--queue: 'GPU Queue' is not a Kubernetes object name"),
    ],
)
def test_bad_kueue_options_exit_2_naming_the_fix(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([*JOBSET_PLAN, *args]) == 2
    assert message in capsys.readouterr().err


def test_jobset_plan_refuses_a_local_model_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", SPEC, "--backend", "jobset", "--set", "model_dir=/tmp/m"]) == 2
    assert "model_dir: '/tmp/m' is a local path" in capsys.readouterr().err


def test_a_placement_topology_needs_a_queue(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    placement = tmp_path / "placement.yaml"
    placement.write_text(
        "worker: {topology: {level: cloud.google.com/gce-topology-block, required: true}}\n"
    )
    assert main([*PLAN, "--placement", str(placement)]) == 2
    assert "the topology of worker is honoured by Kueue's topology-aware scheduling only; " in (
        capsys.readouterr().err
    )
    jobset, _ = plan_yaml(capsys, "--placement", str(placement), "--queue", "gpu-queue")
    validate(jobset)
    worker = next(r for r in jobset["spec"]["replicatedJobs"] if r["name"] == "worker")
    assert worker["template"]["spec"]["template"]["metadata"]["annotations"] == {
        "kueue.x-k8s.io/podset-required-topology": "cloud.google.com/gce-topology-block"
    }
