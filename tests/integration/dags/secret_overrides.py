"""A DAG whose trainer gets a credential from an Airflow Variable through a templated override
(`test_secrets.py` runs it and looks for the value in the metadata database and every log).

The trainer writes the SHA-256 of what it received to its model directory, and prints only
its length.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from tfdist.spec import parse_spec
from tfdist_airflow import train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
RECEIVES = (
    "import hashlib, os, pathlib; value = os.environ['EXTRA']; "
    "pathlib.Path(os.environ['MODEL_DIR'], 'extra.sha256')"
    ".write_text(hashlib.sha256(value.encode()).hexdigest()); "
    "print('EXTRA has', len(value), 'characters', flush=True)"
)

with DAG(
    dag_id="tfdist_secret_overrides",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        parse_spec(
            {
                "name": "secret-overrides",
                "trainer": {"command": ["python", "-c", RECEIVES]},
                "train_spec": {"max_steps": 1},
                "model_dir": f"{BASE_DIR}/models",
            }
        ),
        # A name Airflow does not mask by itself (it masks Variables named like *secret*).
        overrides={"trainer.env.EXTRA": "{{ var.value.get('trainer_extra') }}"},
        poll_interval=1.0,
    )
