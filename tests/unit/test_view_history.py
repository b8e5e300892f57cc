"""The Model history tab by value: versions newest first, each metric's change from the version
before, the gate's margins against its baseline, the versions read from a serving directory."""

from __future__ import annotations

from pathlib import Path

from tfdist.deploy import DEPLOYMENT_JSON, SAVED_MODEL_PB, Deployment, deployments
from tfdist.gate import Baseline, GateSpec, decide
from tfdist.records import EvalRecord
from tfdist.storage import storage_for
from tfdist_airflow.view.history import history, render_history

GATE = GateSpec.from_params(
    {"accuracy": {"min": 0.9, "change": {"direction": "higher_is_better", "absolute": -0.02}}}
)


def deployment(version: int, accuracy: float, path: str = "/s") -> Deployment:
    return Deployment(
        model_name="digits", version=version, path=f"{path}/{version}", run_id=f"run-{version}",
        model_dir=f"/m/{version}", metrics={"accuracy": accuracy}, global_step=400,
        deployed_at=86400.0 * version,
    )  # fmt: skip


def test_versions_with_changes_and_margins() -> None:
    final = EvalRecord(
        global_step=400, metrics={"accuracy": 0.9566}, checkpoint_path="/m/2/ckpt-400",
        timestamp=1.0, eval_steps=5,
    )  # fmt: skip
    baseline = Baseline(version=1, metrics={"accuracy": 0.96}, model_dir="/m/1")
    blessed = decide(final, GATE, baseline, now=0, model_dir="/m/2")
    rows = history([deployment(1, 0.96), deployment(2, 0.9566)], {2: blessed, 1: None})
    assert [row.version for row in rows] == [2, 1]
    assert rows[0].changes == {"accuracy": 0.9566 - 0.96} and rows[1].changes == {}
    assert [(m.rule, m.shown) for m in rows[0].margins] == [
        ("min 0.9", "+0.0566"),
        ("change >= -0.02 vs version 1", "+0.0166"),
    ]
    assert rows[1].margins == () and rows[0].baseline_version == 1
    page = render_history("Model history: nightly", [("digits", rows)], "run-2")
    assert page.count('class="version') == 2
    assert '<tr class="version this-run" data-version="2">' in page
    assert 'accuracy 0.9566 <span class="muted">(-0.0034)</span>' in page
    assert "not recorded" in page  # version 1's decision was not read
    assert "No version is deployed yet" in render_history("t", [("digits", ())], "r")


def test_deployments_are_the_complete_versions_newest_first(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    for version in (1, 2, 3):
        directory = root / str(version)
        directory.mkdir(parents=True)
        (directory / DEPLOYMENT_JSON).write_text(deployment(version, 0.9).model_dump_json())
        if version != 3:  # version 3 is still being copied
            (directory / SAVED_MODEL_PB).write_bytes(b"")
    found = deployments(storage_for(str(tmp_path)), str(tmp_path), "digits")
    assert [d.version for d in found] == [2, 1]
