"""A spot-capacity DAG for `test_preemption.py`: the digits trainer (TensorFlow) as a
parameter-server job (chief, one worker, one ps) whose chief the test reclaims while it trains.

Checkpoints every 150 steps of 300, so a notice comes between two of them; a grace period of
10 s, after which the test kills what is still running. The data directory comes from
`TFDIST_DIGITS_DATA`.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from tfdist.spec import parse_spec
from tfdist_airflow import train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")

with DAG(
    dag_id="tfdist_spot",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        parse_spec(
            {
                "name": "spot",
                "trainer": {"entrypoint": "tfdist.examples.digits"},
                "cluster": {"worker": 1, "ps": 1},
                "train_spec": {
                    "max_steps": 300,
                    "save_checkpoints_steps": 150,
                    "log_step_count_steps": 10,
                },
                "restart_policy": {"grace_period_secs": 10},
                "model_dir": f"{BASE_DIR}/models",
                "data_dir": os.environ.get("TFDIST_DIGITS_DATA", f"{BASE_DIR}/digits"),
            }
        ),
        poll_interval=1.0,
    )
