"""Nightly retraining of the digits model: prepare data, train and evaluate, gate, export, deploy.

The gate blesses a model whose accuracy is at least `min_accuracy`, whose loss is at most
`max_loss`, and whose accuracy is no more than `max_accuracy_drop` (0.02) below the deployed
version's.

The train-and-evaluate step expands into one task per role (chief, 2 workers, 1 ps, evaluator)
on local processes. Trigger with other values: `airflow dags test nightly_retrain -c
'{"max_steps": 200}'`. Directories live under `$TFDIST_BASE_DIR` (default /tmp/tfdist).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param, task

from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.runs import run_model_dir

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
SPEC = Path(__file__).parent / "specs" / "digits.yaml"

with DAG(
    dag_id="nightly_retrain",
    schedule="@daily",
    catchup=False,
    max_active_runs=3,
    params={
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
    tags=["tfdist", "example"],
    doc_md=__doc__,
):

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
        model_dir_base=f"{BASE_DIR}/models",
        overrides={
            "train_spec.max_steps": "{{ params.max_steps }}",
            "data_dir": "{{ ti.xcom_pull(task_ids='prepare_data') }}",
        },
    )
    data_dir >> training
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
        serving_base=f"{BASE_DIR}/serving",
        model_name="digits",
    )
