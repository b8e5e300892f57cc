"""Nightly retraining of the digits model on GKE: one JobSet, admitted as a gang by Kueue.

The same steps as `nightly_retrain` (train and evaluate, gate, export, deploy, here as model
`digits-gke`) with the JobSet backend: the chief trains on an NVIDIA L4 in node pool
`gpu-pool`, the workers on L4s in the spot pool `gpu-spot-pool`, the parameter server and the
evaluator on `cpu-pool`. Kueue admits every role at once from the LocalQueue `tfdist-queue`;
the JobSet's controllers restart a preempted or crashed role (alone, or with every role from
the last checkpoint) by the lifecycle policy compiled into it, also while Airflow is down, and
the watch tasks report what they do. A cluster without JobSet installs it first (README,
"Running on GKE").
The roles prepare the data themselves. Data, checkpoints, eval records and serving versions
live under `gs://<bucket>/tfdist/`; the bucket is the DAG param `bucket`, else the Airflow
Variable `tfdist_bucket`, rendered when a task runs (not when this file is parsed).

Pods run as the Kubernetes service account `tfdist-trainer` in namespace `tfdist`, bound to a
Google service account by Workload Identity; the trainer image is `$TFDIST_TRAINER_IMAGE`.
The export step runs as a pod of the trainer image, placed as the chief. See "Running on GKE"
in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from tfdist.kubernetes.kueue import Kueue
from tfdist.kubernetes.placement import JobPlacement, RolePlacement
from tfdist_airflow import JobSetBackend, gate_export_deploy, train_and_evaluate

BUCKET = "gs://{{ params.bucket or var.value.get('tfdist_bucket', '') }}/tfdist"  # per run
SPEC = Path(__file__).parent / "specs" / "digits.yaml"
L4 = {"accelerator": "nvidia-l4", "gpus": 1, "cpu": "4", "memory": "16Gi"}

BACKEND = JobSetBackend(
    namespace="tfdist",
    connection_id="kubernetes_default",  # absent: the in-cluster service account is used
    image=os.environ.get("TFDIST_TRAINER_IMAGE", "tfdist-trainer:latest"),
    placement=JobPlacement(
        default=RolePlacement(
            service_account="tfdist-trainer", node_pool="cpu-pool", cpu="2", memory="8Gi"
        ),
        chief=RolePlacement(node_pool="gpu-pool", **L4),
        worker=RolePlacement(node_pool="gpu-spot-pool", spot=True, **L4),
    ),
    kueue=Kueue(queue_name="tfdist-queue"),
)

with DAG(
    dag_id="nightly_retrain_gke",
    schedule="@daily",
    catchup=False,
    max_active_runs=3,
    params={
        "bucket": Param(
            None,
            type=["null", "string"],
            description="GCS bucket for data, models and serving; default: Variable tfdist_bucket",
        ),
        "max_steps": Param(400, type="integer", minimum=1, description="training steps"),
        "min_accuracy": Param(0.9, type="number", description="gate: accuracy >= this"),
        "max_accuracy_drop": Param(
            0.02,
            type="number",
            minimum=0,
            description="gate: accuracy >= the deployed version's minus this",
        ),
        "max_loss": Param(0.5, type="number", description="gate: loss <= this"),
    },
    tags=["tfdist", "example", "gke"],
    doc_md=__doc__,
):
    training = train_and_evaluate(
        SPEC,
        backend=BACKEND,
        model_dir_base=f"{BUCKET}/models",
        overrides={
            "train_spec.max_steps": "{{ params.max_steps }}",
            "data_dir": f"{BUCKET}/data/digits",
        },
        watch_retries=0,  # the cluster restarts roles; a watch follows its role across them
        poll_interval=10.0,
    )
    gate_export_deploy(
        training,
        thresholds={
            "accuracy": {
                "min": "{{ params.min_accuracy }}",
                "change": {
                    "direction": "higher_is_better",
                    "absolute": "{{ -params.max_accuracy_drop }}",
                },
            },
            "loss": {"max": "{{ params.max_loss }}"},
        },
        serving_base=f"{BUCKET}/serving",
        model_name="digits-gke",  # its own serving directory and Asset name
    )
