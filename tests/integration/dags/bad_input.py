"""A DAG of launch tasks that must each refuse their input (`test_bad_input_table.py`).

Each task group is one case; a templated value that renders to a constant (`{{ 'gs://' }}`)
passes the DAG builder's static checks and reaches the launch task, as a value chosen per run
would. Every launch task may retry twice: a refusal must fail it at once all the same.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from tfdist.spec import parse_spec
from tfdist_airflow import JobSetBackend, gate_export_deploy, train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
QUICK = ["python", "-c", "print('a role ran')"]


def job(trainer: dict[str, Any] | None = None, **cluster: int) -> Any:
    return parse_spec(
        {
            "name": "refused",
            "trainer": trainer or {"command": QUICK},
            "cluster": {"worker": 1, **cluster},
            "train_spec": {"max_steps": 5},
            "model_dir": f"{BASE_DIR}/models",
        }
    )


# group id -> train_and_evaluate arguments
CASES: dict[str, dict[str, Any]] = {
    "base_no_bucket": {"model_dir_base": "{{ 'gs://' }}"},
    "base_one_slash": {"model_dir_base": "{{ 'gs:/bucket/models' }}"},
    "base_upper_scheme": {"model_dir_base": "{{ 'GS://bucket/models' }}"},
    "base_s3": {"model_dir_base": "{{ 's3://bucket/models' }}"},
    "base_relative": {"model_dir_base": "{{ 'models' }}"},
    "base_upper_bucket": {"model_dir_base": "{{ 'gs://Bad_Bucket/models' }}"},
    "base_bang_bucket": {"model_dir_base": "{{ 'gs://bucket!/models' }}"},
    "base_not_a_directory": {"model_dir_base": f"{BASE_DIR}/a-file/models"},
    "data_relative": {"overrides": {"data_dir": "{{ 'data' }}"}},
    "data_hdfs": {"overrides": {"data_dir": "{{ 'hdfs://namenode/data' }}"}},
    "max_steps_zero": {"overrides": {"train_spec.max_steps": "{{ 0 }}"}},
    "unknown_override": {"overrides": {"train_spec.max_stepz": 5}},
    "eval_name_path": {"overrides": {"eval_spec.name": "{{ 'a/b' }}"}},
    "cluster_too_big": {"overrides": {"cluster": {"worker": 100_000}}},
    "entrypoint_typo": {"job": job({"entrypoint": "tfdist.examples.digitz"})},
    "command_missing": {"job": job({"command": ["no-such-trainer", "--flag"]})},
    "jobset_local_base": {
        "backend": JobSetBackend(image="trainer:1"),
        "model_dir_base": "{{ '/tmp/tfdist-pods/models' }}",
    },
}
SERVING_CASE = "serving_relative"  # the gate's serving base, checked by the launch

with DAG(
    dag_id="tfdist_bad_input",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    tags=["tfdist", "test"],
):
    for group_id, case in CASES.items():
        arguments = {"job": job(), "model_dir_base": f"{BASE_DIR}/models", **case}
        train_and_evaluate(group_id=group_id, **arguments)
    training = train_and_evaluate(
        job(evaluator=1), group_id=SERVING_CASE, model_dir_base=f"{BASE_DIR}/models"
    )
    gate_export_deploy(
        training,
        thresholds={"accuracy": {"min": 0.5}},
        serving_base="{{ 'serving' }}",
        model_name="refused",
    )
