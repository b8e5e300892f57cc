"""Role processes on a gs:// model directory: TensorFlow's own GCS client, routed to the
emulator by `TfGcsProxy`, writes checkpoints and eval records; a rerun resumes from them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcs_emulator import EMULATOR_ENV, GcsEmulator
from gcs_tls_proxy import TfGcsProxy
from jobtools import digits_job, run_tfdist

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(emulator: GcsEmulator) -> Iterator[TfGcsProxy]:
    with TfGcsProxy(emulator.url) as running:
        yield running


def test_a_rerun_resumes_from_the_checkpoints_in_the_bucket(
    emulator: GcsEmulator, proxy: TfGcsProxy, digits_data: str, tmp_path: Path
) -> None:
    bucket = emulator.new_bucket()
    model_dir = f"gs://{bucket}/models/digits"
    env = {**os.environ, EMULATOR_ENV: emulator.url, **proxy.env()}
    cluster = {"chief": 1, "worker": 1, "evaluator": 1}

    first = run_tfdist(
        digits_job("gcs", model_dir, digits_data, cluster, max_steps=40), tmp_path, env=env
    )
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    stored = emulator.objects(bucket, "models/digits/")
    assert {"ckpt-40.index", "checkpoint", "tfdist/train-done.json"} <= set(stored)
    assert json.loads(stored["eval/record-000000000040.json"])["global_step"] == 40

    second = run_tfdist(
        digits_job("gcs", model_dir, digits_data, cluster, max_steps=60), tmp_path, env=env
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "training from step 40 to 60" in second.stdout
    assert "ckpt-60.index" in emulator.objects(bucket, "models/digits/")
    assert any("/upload/" in request for request in proxy.requests)  # TensorFlow wrote through it
