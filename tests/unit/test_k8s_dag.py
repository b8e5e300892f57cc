"""The GKE example DAG and the Kubernetes backend's modules parse fast: no `kubernetes`,
`google` or provider import until a task talks to the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate

from tfdist.kubernetes.manifests import plan_manifests
from tfdist.kubernetes.names import RunRef
from tfdist.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "nightly_retrain_gke.py"
HEAVY = ("tensorflow", "keras", "kubernetes", "kubernetes_asyncio", "google")

_PROBE = """
import importlib.util, json, sys
import tfdist.kubernetes.fake, tfdist.kubernetes.launcher
from tfdist_airflow.backends import KubernetesBackend
import tfdist_airflow.kubernetes_api, tfdist_airflow.roles, tfdist_airflow.triggers
KubernetesBackend(image="trainer:1").connect()  # builds, connects to nothing
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
    from tfdist_airflow.backends import KubernetesBackend, backend_from_dict

    backend = backend_from_dict(launch.backend)
    assert isinstance(backend, KubernetesBackend)
    ref = RunRef(dag=dag.dag_id, run="scheduled__2027-01-15T00-00-00-00-00", launch="1")
    spec = load_spec(REPO / "dags" / "specs" / "digits.yaml")
    service, *pods = plan_manifests(spec, backend.target(), ref)
    for obj in (service, *pods):
        kubernetes_validate.validate(obj, "1.30", strict=True)
    selectors = {pod["spec"]["hostname"]: pod["spec"]["nodeSelector"] for pod in pods}
    assert selectors == {
        "chief-0": {
            "cloud.google.com/gke-nodepool": "gpu-pool",
            "cloud.google.com/gke-accelerator": "nvidia-l4",
        },
        **{
            f"worker-{i}": {
                "cloud.google.com/gke-nodepool": "gpu-spot-pool",
                "cloud.google.com/gke-accelerator": "nvidia-l4",
                "cloud.google.com/gke-spot": "true",
            }
            for i in (0, 1)
        },
        "ps-0": {"cloud.google.com/gke-nodepool": "cpu-pool"},
        "evaluator-0": {"cloud.google.com/gke-nodepool": "cpu-pool"},
    }
    assert {pod["spec"]["serviceAccountName"] for pod in pods} == {"tfdist-trainer"}
    gpus = {
        pod["spec"]["hostname"]: pod["spec"]["containers"][0]["resources"]["limits"].get(
            "nvidia.com/gpu"
        )
        for pod in pods
        if "limits" in pod["spec"]["containers"][0].get("resources", {})
    }
    assert gpus == {"chief-0": "1", "worker-0": "1", "worker-1": "1"}
