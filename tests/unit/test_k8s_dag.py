"""The GKE example DAG and the Kubernetes backend's modules parse fast: no `kubernetes`,
`google` or provider import until a task talks to the cluster. The DAG's JobSet is validated
against the JobSet CRD schema and its pod templates against Kubernetes' (no cluster here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tfdist.kubernetes.names import RunRef
from tfdist.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "nightly_retrain_gke.py"
HEAVY = ("tensorflow", "keras", "kubernetes", "kubernetes_asyncio", "google")

_PROBE = """
import importlib.util, json, sys
import tfdist.testing.jobset_cluster, tfdist.kubernetes.jobset_launcher
from tfdist_airflow.backends import JobSetBackend
import tfdist_airflow.kubernetes_api, tfdist_airflow.roles, tfdist_airflow.triggers
JobSetBackend(image="trainer:1").connect()  # builds, connects to nothing
spec = importlib.util.spec_from_file_location("dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = sys.argv[2].split(",")
print(json.dumps(sorted(
    name for name in sys.modules
    if name.split(".")[0] in heavy or name.startswith("airflow.providers.cncf.kubernetes.hooks")
)))
"""


def test_modules_and_dag_file_load_no_cluster_or_cloud_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(DAG_FILE), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_dag_runs_its_roles_on_gke_node_pools() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["nightly_retrain_gke"]
    launch = dag.task_dict["train_and_evaluate.launch"]
    bucket = "gs://{{ params.bucket or var.value.get('tfdist_bucket', '') }}/tfdist"
    assert launch.model_dir_base == f"{bucket}/models"
    assert dag.task_dict["deploy"].serving_base == f"{bucket}/serving"
    from jobset_schema import validate

    from tfdist.kubernetes.jobset import plan_jobset
    from tfdist_airflow.backends import JobSetBackend, backend_from_dict

    backend = backend_from_dict(launch.backend)
    assert isinstance(backend, JobSetBackend)
    assert backend.kueue.queue_name == "tfdist-queue"
    ref = RunRef(dag=dag.dag_id, run="scheduled__2027-01-15T00-00-00-00-00", launch="1")
    spec = load_spec(REPO / "dags" / "specs" / "digits.yaml").with_overrides(
        {"model_dir": "gs://tfdist-bucket/models"}
    )
    jobset = plan_jobset(spec, backend.target(), ref=ref)
    validate(jobset)
    pods = {
        r["name"]: r["template"]["spec"]["template"]["spec"]
        for r in jobset["spec"]["replicatedJobs"]
    }
    assert {role: pod["nodeSelector"] for role, pod in pods.items()} == {
        "chief": {
            "cloud.google.com/gke-nodepool": "gpu-pool",
            "cloud.google.com/gke-accelerator": "nvidia-l4",
        },
        "worker": {
            "cloud.google.com/gke-nodepool": "gpu-spot-pool",
            "cloud.google.com/gke-accelerator": "nvidia-l4",
            "cloud.google.com/gke-spot": "true",
        },
        "ps": {"cloud.google.com/gke-nodepool": "cpu-pool"},
        "evaluator": {"cloud.google.com/gke-nodepool": "cpu-pool"},
    }
    assert {pod["serviceAccountName"] for pod in pods.values()} == {"tfdist-trainer"}
    gpus = {
        role: pod["containers"][0].get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        for role, pod in pods.items()
    }
    assert gpus == {"chief": "1", "worker": "1", "ps": None, "evaluator": None}
    watch = dag.task_dict["train_and_evaluate.watch"]
    assert watch.retries == 0  # the cluster restarts roles
