"""Bench-only DAG: the example job's train-and-evaluate group and nothing else.

`python -m bench.airflow_overhead` runs it with `airflow dags test` next to `tfdist run` of the
same spec (`components/tfdist/examples/digits.yaml`) on the same prepared data.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Param

from tfdist_airflow import train_and_evaluate

SPEC = Path(__file__).resolve().parents[2] / "components" / "tfdist" / "examples" / "digits.yaml"
BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")

with DAG(
    dag_id="bench_train_and_evaluate",
    schedule=None,
    catchup=False,
    params={"max_steps": Param(400, type="integer", minimum=1)},
    tags=["tfdist", "bench"],
):
    train_and_evaluate(
        SPEC,
        model_dir_base=f"{BASE_DIR}/models",
        overrides={
            "train_spec.max_steps": "{{ params.max_steps }}",
            "data_dir": os.environ.get("TFDIST_BENCH_DATA_DIR", f"{BASE_DIR}/data"),
        },
    )
