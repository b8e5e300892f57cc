"""The bar before the gate decides, by value: the gate task's thresholds rendered with the run's
params, the version deployed now as baseline, and the charts drawing both from the first eval
point; once the gate decided, its own record wins."""

from __future__ import annotations

import time
from pathlib import Path

from tfdist.deploy import DEPLOYMENT_JSON, SAVED_MODEL_PB, Deployment
from tfdist.gate import MetricThreshold
from tfdist.records import EvalRecord
from tfdist.storage import storage_for
from tfdist_airflow.view.bar import Bar, GateTask, render, the_bar, thresholds_of
from tfdist_airflow.view.model import LineKind, eval_series

TEMPLATED = {
    "accuracy": {
        "min": "{{ params.min_accuracy }}",
        "change": {"direction": "higher_is_better", "absolute": "{{ -params.max_accuracy_drop }}"},
    },
    "loss": {"max": "{{ params.max_loss }}"},
}
PARAMS = {"min_accuracy": 0.9, "max_accuracy_drop": 0.02, "max_loss": 0.5}


def deploy(serving: Path, version: int, accuracy: float) -> None:
    path = serving / "digits" / str(version)
    path.mkdir(parents=True)
    deployment = Deployment(
        model_name="digits", version=version, path=str(path), run_id=f"run-{version}",
        model_dir=f"/models/{version}", metrics={"accuracy": accuracy, "loss": 0.2},
        global_step=400, deployed_at=time.time(),
    )  # fmt: skip
    (path / DEPLOYMENT_JSON).write_text(deployment.model_dump_json())
    (path / SAVED_MODEL_PB).write_bytes(b"")


def test_templates_over_params_render() -> None:
    assert render(TEMPLATED, PARAMS)["accuracy"]["min"] == "0.9"
    params = {"min_accuracy": 0.8, "max_accuracy_drop": 0.1, "max_loss": 1}
    found = thresholds_of(GateTask(thresholds=TEMPLATED), params)
    assert found is not None and found["accuracy"].change is not None
    assert (found["accuracy"].min, found["loss"].max) == (0.8, 1.0)
    assert found["accuracy"].change.absolute == -0.1


def test_thresholds_that_need_more_than_params_wait_for_the_gate() -> None:
    xcom = {"accuracy": {"min": "{{ ti.xcom_pull(task_ids='tune') }}"}}
    assert thresholds_of(GateTask(thresholds=xcom), PARAMS) is None
    assert thresholds_of(GateTask(thresholds=TEMPLATED), {}) is None  # a param missing
    assert thresholds_of(GateTask(thresholds={"accuracy": {"min": 2, "max": 1}}), {}) is None
    assert thresholds_of(GateTask(thresholds=None), {}) == {}


def test_the_bar_has_the_version_deployed_now(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    deploy(serving, 1, 0.93)
    deploy(serving, 2, 0.95)
    gate = GateTask(thresholds=TEMPLATED, serving_base=str(serving), model_name="digits")
    bar = the_bar(gate, PARAMS, storage_for)
    assert bar is not None and bar.baseline is not None
    assert (bar.baseline.version, bar.baseline.metrics["accuracy"]) == (2, 0.95)
    unnamed = the_bar(gate.model_copy(update={"model_name": None}), PARAMS, storage_for)
    assert unnamed is not None and unnamed.baseline is None
    assert the_bar(GateTask(thresholds=None), PARAMS, storage_for) is None


def test_charts_draw_the_bar_from_the_first_eval_point() -> None:
    first = EvalRecord(
        global_step=100, metrics={"accuracy": 0.7}, checkpoint_path="/m/ckpt-100",
        timestamp=1.0, eval_steps=5,
    )  # fmt: skip
    bar = Bar(thresholds={"accuracy": MetricThreshold(min=0.9)})
    (series,) = eval_series([first], None, bar)
    assert [(line.kind, line.value) for line in series.lines] == [(LineKind.MIN, 0.9)]
    (without,) = eval_series([first], None)
    assert without.lines == ()
