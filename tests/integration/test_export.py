"""Train the digits example, gate it, export its final checkpoint, deploy it, serve it back.

Real processes: `python -m tfdist.runtime` in local mode (no TF_CONFIG) trains and evaluates,
`python -m tfdist.runtime.export` writes the SavedModel; this process loads what was deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tfdist.deploy import DeployStatus, deploy, latest_deployment
from tfdist.gate import GateSpec, decide, read_blessing, read_final_eval, write_blessing
from tfdist.runtime.export import export_command
from tfdist.storage import LocalStorage

pytestmark = pytest.mark.integration

MAX_STEPS = 30


def run_with_job(command: list[str], spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env |= {"TFDIST_JOB": json.dumps(spec), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_train_export_deploy_serve(tmp_path: Path) -> None:
    model_dir = tmp_path / "models/digits/manual__1"
    spec = {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "train_spec": {"max_steps": MAX_STEPS, "save_checkpoints_steps": 10},
        "eval_spec": {"start_delay_secs": 0, "throttle_secs": 0},
        "model_dir": str(model_dir),
        "data_dir": str(tmp_path / "data"),
    }
    run_with_job([sys.executable, "-m", "tfdist.runtime"], spec)

    storage = LocalStorage()
    record = read_final_eval(storage, str(model_dir), max_steps=MAX_STEPS)
    assert record.global_step == MAX_STEPS
    gate = GateSpec.from_params({"accuracy": {"min": 0.0}, "loss": {"max": 100.0}})
    blessing = decide(record, gate, None, now=1.0)
    assert blessing.blessed, blessing.reasons
    assert blessing.model_dir == str(model_dir)
    write_blessing(storage, str(model_dir), blessing)
    assert read_blessing(storage, str(model_dir)) == blessing

    export_dir = model_dir / f"export/{record.global_step}"
    command = export_command(sys.executable, record.checkpoint_path, str(export_dir))
    first = run_with_job(command, spec)
    assert f"exported step {MAX_STEPS} to {export_dir}" in first.stdout
    written = (export_dir / "saved_model.pb").stat().st_mtime_ns
    again = run_with_job(command, spec)
    assert "already holds a SavedModel; nothing to do" in again.stdout
    assert (export_dir / "saved_model.pb").stat().st_mtime_ns == written
    assert not list(export_dir.parent.glob("*.tmp-*"))

    serving = tmp_path / "serving"
    result = deploy(
        storage,
        export_dir=str(export_dir),
        serving_base=str(serving),
        model_name="digits",
        run_id="manual__1",
        blessing=blessing,
        now=2.0,
    )
    assert result.status is DeployStatus.DEPLOYED
    assert result.deployment == latest_deployment(storage, str(serving), "digits")
    assert result.deployment is not None and result.deployment.path == f"{serving}/digits/1"

    served_accuracy = _serve_eval_set(result.deployment.path, str(tmp_path / "data"))
    assert served_accuracy == pytest.approx(record.metrics["accuracy"], abs=1e-6)


def _serve_eval_set(saved_model: str, data_dir: str) -> float:
    """Call `serving_default` as TF Serving would; the accuracy over the digits eval set."""
    import numpy as np
    import tensorflow as tf

    from tfdist.examples import digits
    from tfdist.runtime.contract import RunContext

    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]

    outputs = signature(image=tf.random.uniform((3, 64)))
    assert [tuple(output.shape) for output in outputs.values()] == [(3, 10)]

    ctx = RunContext(model_dir="", data_dir=data_dir, task_type="test", task_index=0, num_workers=1)
    correct = total = 0
    for images, labels in digits.eval_input_fn(ctx):
        (logits,) = signature(image=images).values()
        correct += int(np.sum(np.argmax(logits.numpy(), axis=1) == labels.numpy()))
        total += int(labels.shape[0])
    return correct / total
