"""Nightly retraining of the digits model with its model directories and serving base on GCS.

The same steps as `nightly_retrain` (prepare data, train and evaluate, gate, export, deploy);
each run trains in `gs://<bucket>/tfdist/models/nightly_retrain_gcs/<run>` and deploys to
`gs://<bucket>/tfdist/serving/digits/<version>/`. The bucket is the DAG param `bucket`, else
the Airflow Variable `tfdist_bucket`:

    airflow variables set tfdist_bucket my-ml-bucket
    airflow dags test nightly_retrain_gcs -c '{"bucket": "other-bucket"}'

Before any role starts, the launch task checks that the model directory can be written and
fails naming the bucket, the credential and the missing permission. The Airflow worker needs
roles/storage.objectAdmin on the bucket; the role processes too (see the README's section on
Cloud Storage). The prepared data stays on the worker's disk (`$TFDIST_BASE_DIR`). The
Airflow side uses Application Default Credentials; pass `gcp_conn_id=` to
`train_and_evaluate` to use an Airflow connection instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param, task

from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.runs import run_model_dir

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
SPEC = Path(__file__).parent / "specs" / "digits.yaml"
BUCKET = "{{ params.bucket or var.value.get('tfdist_bucket', '') }}"  # rendered per run

with DAG(
    dag_id="nightly_retrain_gcs",
    schedule="@daily",
    catchup=False,
    max_active_runs=3,
    params={
        "bucket": Param(
            None,
            type=["null", "string"],
            description="GCS bucket for models and serving; default: Variable tfdist_bucket",
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
    tags=["tfdist", "example", "gcs"],
    doc_md=__doc__,
) as dag:

    @task
    def prepare_data(dag_run=None) -> str:  # type: ignore[no-untyped-def]
        """Write this run's TFRecord shards (the digits data stands in for a nightly export)."""
        from tfdist import tflog

        tflog.quiet_import()  # TensorFlow's start-up lines would show as errors in this log
        from tfdist.examples.digits import prepare_data

        return prepare_data(run_model_dir(f"{BASE_DIR}/data", dag_run.dag_id, dag_run.run_id))

    data_dir = prepare_data()
    training = train_and_evaluate(
        SPEC,
        model_dir_base=f"gs://{BUCKET}/tfdist/models",
        overrides={
            "train_spec.max_steps": "{{ params.max_steps }}",
            "data_dir": "{{ ti.xcom_pull(task_ids='prepare_data') }}",
        },
    )
    data_dir >> training
    *_, deploy = gate_export_deploy(
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
        serving_base=f"gs://{BUCKET}/tfdist/serving",
        model_name="digits",
    )
