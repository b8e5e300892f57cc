"""The digits example trains at any cluster size: its batches are sized per replica."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobtools import (
    HERE,
    assert_no_process_left,
    checkpoint_step,
    digits_job,
    latest_run_dir,
    run_tfdist,
)

from tfdist.examples.digits import PER_REPLICA_BATCH_SIZE

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_the_example_trains_at_1_3_8_and_12_replicas(digits_data: str) -> None:
    """One process, `MirroredStrategy` over N logical CPU devices: the same input function
    and `num_replicas_in_sync` as N all-reduce workers, for the price of one TF import."""
    counts = [1, 3, 8, 12]
    result = subprocess.run(
        [sys.executable, str(HERE / "digits_replicas.py"), digits_data, *map(str, counts)],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    trained = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert trained == [
        {"replicas": n, "batches": [PER_REPLICA_BATCH_SIZE] * n, "steps": 2, "finite": True}
        for n in counts
    ]


@pytest.mark.timeout(420)
def test_the_example_trains_with_12_all_reduce_processes(tmp_path: Path, digits_data: str) -> None:
    """Chief + 11 workers on 127.0.0.1, two steps: 12 replicas in sync, global batch 768
    (more roles than the local backend admits on 2 CPUs by default, hence the explicit limit)."""
    model_dir = tmp_path / "model"
    spec = digits_job(
        "twelve", model_dir, digits_data, {"worker": 11}, max_steps=2, save_checkpoints_steps=2
    )

    result = run_tfdist(spec, tmp_path, "--max-local-roles", "12", timeout=400)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert checkpoint_step(model_dir) == 2
    assert "[worker-10]" in result.stdout
    assert "not divisible" not in result.stdout
    assert_no_process_left(latest_run_dir(tmp_path, "twelve"))
