"""DAGs that the reliability tests run through a real scheduler (`test_backfill.py`).

- `tfdist_backfill`: a two-role all-reduce job (`plain_trainer.py`: TensorFlow, gRPC on loopback)
  that the tests backfill three dates at once; `trainer.env` carries a credential that must
  not leak.
- `tfdist_hold`: roles that only wait, to be killed or marked failed while they run.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from tfdist.spec import JobSpec, parse_spec
from tfdist_airflow import train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
PLAIN_TRAINER = str(Path(__file__).parents[1] / "plain_trainer.py")
WAITS = "import time; print('started', flush=True); time.sleep(600)"


def job(name: str, command: list[str], cluster: dict[str, int], **env: str) -> JobSpec:
    return parse_spec(
        {
            "name": name,
            "trainer": {"command": command, "env": env},
            "cluster": cluster,
            "train_spec": {"max_steps": 5},
            "model_dir": f"{BASE_DIR}/models",
        }
    )


with DAG(
    dag_id="tfdist_backfill",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    end_date=datetime(2026, 1, 31),  # no scheduled run of its own: only what is backfilled
    catchup=False,
    max_active_runs=3,
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        job(
            "backfill",
            ["python", PLAIN_TRAINER],
            {"worker": 1},
            TFDIST_TEST_TOKEN=os.environ.get("TFDIST_TEST_TOKEN", "unset"),
        ),
        poll_interval=1.0,
    )

with DAG(
    dag_id="tfdist_hold",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        job("hold", ["python", "-c", WAITS], {"worker": 1, "evaluator": 1}), poll_interval=1.0
    )
