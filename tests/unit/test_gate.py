"""The gate: decisions by value, threshold parsing errors, blessing files and the final record."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tfdist.gate import (
    NO_BASELINE,
    NO_THRESHOLDS,
    Baseline,
    ChangeThreshold,
    Direction,
    EvaluatorNotFinished,
    GateError,
    GateSpec,
    MetricThreshold,
    decide,
    read_blessing,
    read_final_eval,
    relative_change,
    write_blessing,
)
from tfdist.records import EvalRecord, eval_record_name
from tfdist.storage import LocalStorage

NOW = 1_700_000_000.0


def record(**metrics: float) -> EvalRecord:
    return EvalRecord(
        global_step=400,
        metrics=metrics,
        checkpoint_path="/models/run-1/ckpt-400",
        timestamp=NOW - 10,
        eval_steps=20,
    )


def baseline(**metrics: float) -> Baseline:
    return Baseline(version=3, metrics=metrics, model_dir="/models/run-0", run_id="run-0")


LOSS_MAY_RISE_005 = {"loss": {"change": {"direction": "lower_is_better", "absolute": 0.05}}}
ACC_MAY_FALL_1PCT = {"accuracy": {"change": {"direction": "higher_is_better", "relative": -0.01}}}
ACC_MUST_GAIN_001 = {"accuracy": {"change": {"direction": "higher_is_better", "absolute": 0.01}}}

# id, params, candidate metrics, baseline metrics (None: none deployed), reasons, notes
Case = tuple[str, dict[str, Any], dict[str, float], dict[str, float] | None, list[str], list[str]]

DECISIONS: list[Case] = [
    ("min passes", {"accuracy": {"min": 0.9}}, {"accuracy": 0.95}, None, [], []),
    ("min is inclusive", {"accuracy": {"min": 0.9}}, {"accuracy": 0.9}, None, [], []),
    (
        "below min",
        {"accuracy": {"min": 0.9}},
        {"accuracy": 0.85},
        None,
        ["accuracy 0.85 is below min 0.9"],
        [],
    ),
    ("max passes", {"loss": {"max": 0.3}}, {"loss": 0.2}, None, [], []),
    ("max is inclusive", {"loss": {"max": 0.3}}, {"loss": 0.3}, None, [], []),
    (
        "above max",
        {"loss": {"max": 0.3}},
        {"loss": 0.41},
        None,
        ["loss 0.41 is above max 0.3"],
        [],
    ),
    (
        "both bounds fail, sorted by metric",
        {"loss": {"max": 0.3}, "accuracy": {"min": 0.9}},
        {"accuracy": 0.5, "loss": 1.2},
        None,
        ["accuracy 0.5 is below min 0.9", "loss 1.2 is above max 0.3"],
        [],
    ),
    ("NaN fails", {"loss": {"max": 0.3}}, {"loss": math.nan}, None, ["loss is NaN"], []),
    ("no baseline: change skipped", LOSS_MAY_RISE_005, {"loss": 9.0}, None, [], [NO_BASELINE]),
    ("loss rose within limit", LOSS_MAY_RISE_005, {"loss": 0.29}, {"loss": 0.25}, [], []),
    ("loss fell", LOSS_MAY_RISE_005, {"loss": 0.1}, {"loss": 0.25}, [], []),
    (
        "loss rose too much",
        LOSS_MAY_RISE_005,
        {"loss": 0.32},
        {"loss": 0.25},
        ["loss: change +0.07 vs baseline v3 (0.25 -> 0.32); lower_is_better allows at most +0.05"],
        [],
    ),
    ("accuracy fell 0.5%", ACC_MAY_FALL_1PCT, {"accuracy": 0.796}, {"accuracy": 0.8}, [], []),
    (
        "accuracy fell 2%",
        ACC_MAY_FALL_1PCT,
        {"accuracy": 0.784},
        {"accuracy": 0.8},
        [
            "accuracy: relative change -2% vs baseline v3 (0.8 -> 0.784); higher_is_better "
            "allows at least -1%"
        ],
        [],
    ),
    (
        "improvement demanded, not made",
        ACC_MUST_GAIN_001,
        {"accuracy": 0.805},
        {"accuracy": 0.8},
        [
            "accuracy: change +0.005 vs baseline v3 (0.8 -> 0.805); higher_is_better "
            "allows at least +0.01"
        ],
        [],
    ),
    ("improvement made", ACC_MUST_GAIN_001, {"accuracy": 0.82}, {"accuracy": 0.8}, [], []),
    (
        "change equal to the limit",
        ACC_MUST_GAIN_001,
        {"accuracy": 0.03},
        {"accuracy": 0.02},
        [],
        [],
    ),
    (
        "baseline lacks the metric",
        ACC_MUST_GAIN_001,
        {"accuracy": 0.1},
        {"loss": 0.3},
        [],
        ["baseline v3 has no accuracy: its change threshold skipped"],
    ),
    (
        "value bound and change together",
        {"loss": {"max": 0.3, "change": {"direction": "lower_is_better", "absolute": 0.05}}},
        {"loss": 0.35},
        {"loss": 0.1},
        [
            "loss 0.35 is above max 0.3",
            "loss: change +0.25 vs baseline v3 (0.1 -> 0.35); lower_is_better allows at most +0.05",
        ],
        [],
    ),
    (
        "unthresholded metrics are ignored",
        {"accuracy": {"min": 0.9}},
        {"accuracy": 0.95, "loss": math.nan},
        None,
        [],
        [],
    ),
    ("no thresholds", {}, {"accuracy": 1.0}, None, [NO_THRESHOLDS], []),
    (
        "NaN against a baseline",
        LOSS_MAY_RISE_005,
        {"loss": math.nan},
        {"loss": 0.25},
        ["loss is NaN", "loss: cannot compare with baseline v3: a value is NaN"],
        [],
    ),
    (
        "float noise over a zero limit passes",
        {"loss": {"change": {"direction": "lower_is_better", "absolute": 0.0}}},
        {"loss": 0.1 + 0.2},
        {"loss": 0.3},
        [],
        [],
    ),
    (
        "the baseline lacks one metric, the next is still compared",
        {**ACC_MUST_GAIN_001, **LOSS_MAY_RISE_005},
        {"accuracy": 0.9, "loss": 0.5},
        {"loss": 0.25},
        ["loss: change +0.25 vs baseline v3 (0.25 -> 0.5); lower_is_better allows at most +0.05"],
        ["baseline v3 has no accuracy: its change threshold skipped"],
    ),
]


@pytest.mark.parametrize(
    ("params", "metrics", "base", "reasons", "notes"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(
    params: dict[str, Any],
    metrics: dict[str, float],
    base: dict[str, float] | None,
    reasons: list[str],
    notes: list[str],
) -> None:
    gate = GateSpec.from_params(params)
    the_baseline = None if base is None else baseline(**base)
    blessing = decide(record(**metrics), gate, the_baseline, NOW)
    assert (blessing.blessed, list(blessing.reasons), list(blessing.notes)) == (
        not reasons,
        reasons,
        notes,
    )


def test_blessing_records_the_decision() -> None:
    gate = GateSpec.from_params({"accuracy": {"min": 0.9}})
    blessing = decide(record(accuracy=0.95, loss=0.2), gate, baseline(accuracy=0.9), NOW)
    assert blessing.model_dump() == {
        "blessed": True,
        "metrics": {"accuracy": 0.95, "loss": 0.2},
        "global_step": 400,
        "checkpoint_path": "/models/run-1/ckpt-400",
        "model_dir": "/models/run-1",
        "thresholds": {"accuracy": {"min": 0.9, "max": None, "change": None}},
        "baseline": {
            "version": 3,
            "metrics": {"accuracy": 0.9},
            "model_dir": "/models/run-0",
            "run_id": "run-0",
        },
        "reasons": (),
        "notes": (),
        "decided_at": NOW,
    }


def test_model_dir_can_be_given() -> None:
    gate = GateSpec.from_params({"accuracy": {"min": 0.9}})
    blessing = decide(record(accuracy=0.95), gate, None, NOW, model_dir="gs://b/run-1")
    assert blessing.model_dir == "gs://b/run-1"


def test_threshold_on_a_metric_the_evaluator_did_not_write() -> None:
    gate = GateSpec.from_params({"auc": {"min": 0.9}, "f1": {"min": 0.9}, "accuracy": {"min": 0.5}})
    with pytest.raises(GateError) as error:
        decide(record(accuracy=0.95, loss=0.2), gate, None, NOW)
    assert str(error.value) == (
        "gate thresholds name auc, f1, which the evaluator did not write; it wrote: accuracy, "
        "loss. "
        "Fix the metric name, or add the metric to the trainer's eval_metrics"
    )


def test_from_params_builds_models() -> None:
    gate = GateSpec.from_params(
        {"loss": {"max": 0.3, "change": {"direction": "LOWER_IS_BETTER", "absolute": 0.05}}}
    )
    assert gate == GateSpec(
        thresholds={
            "loss": MetricThreshold(
                max=0.3,
                change=ChangeThreshold(direction=Direction.LOWER_IS_BETTER, absolute=0.05),
            )
        }
    )
    assert gate.to_params() == {
        "loss": {"max": 0.3, "change": {"direction": "lower_is_better", "absolute": 0.05}}
    }
    assert GateSpec.from_params(gate.to_params()) == gate
    assert GateSpec.from_params(None) == GateSpec()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"accuracy": {"minimum": 0.9}},
            "accuracy.minimum: unknown field; a threshold takes min, max or change",
        ),
        (
            {"loss": {"change": {"direction": "down", "absolute": 0.1}}},
            "loss.change.direction: Input should be 'higher_is_better' or 'lower_is_better'",
        ),
        (
            {"loss": {"change": {"absolute": 0.1}}},
            "loss.change.direction: required; set it to higher_is_better or lower_is_better",
        ),
        (
            {"loss": {"change": {"direction": "lower_is_better", "abs": 0.1}}},
            "loss.change.abs: unknown field; a threshold takes direction, absolute or relative",
        ),
        (
            {"loss": {"change": {"direction": "lower_is_better"}}},
            "loss.change: set `absolute` and/or `relative`",
        ),
        ({"loss": {}}, "loss: set at least one of `min`, `max` or `change`"),
        ({"accuracy": {"min": 0.9, "max": 0.5}}, "accuracy: min 0.9 is above max 0.5"),
        ({"accuracy": {"min": "high"}}, "accuracy.min: Input should be a valid number"),
        ({"accuracy": {"min": math.inf}}, "accuracy.min: must be a finite number, got inf"),
        ({"accuracy": 0.9}, 'gate threshold accuracy: expected a mapping such as {"min": 0.9}'),
        (["accuracy"], "gate thresholds: expected a mapping of metric name to threshold"),
    ],
)
def test_from_params_errors_name_metric_and_field(params: Any, message: str) -> None:
    with pytest.raises(GateError) as error:
        GateSpec.from_params(params)
    assert message in str(error.value)


def test_every_threshold_error_is_listed_one_per_line() -> None:
    with pytest.raises(GateError) as error:
        GateSpec.from_params({"accuracy": {"minimum": 0.9}, "loss": {}})
    assert str(error.value) == (
        "invalid gate thresholds:\n"
        "  accuracy.minimum: unknown field; a threshold takes min, max or change\n"
        "  loss: set at least one of `min`, `max` or `change`"
    )


@pytest.mark.parametrize(
    ("candidate", "before", "expected"),
    [
        (1.1, 1.0, pytest.approx(0.1)),
        (-1.0, -2.0, 0.5),  # a negative baseline keeps the sign of the change
        (1.0, 0.0, math.inf),
        (-1.0, 0.0, -math.inf),
        (0.0, 0.0, 0.0),
    ],
)
def test_relative_change(candidate: float, before: float, expected: float) -> None:
    assert relative_change(candidate, before) == expected


def test_write_blessing_markers_and_record(tmp_path: Path) -> None:
    storage = LocalStorage()
    model_dir = str(tmp_path / "run-1")
    gate = GateSpec.from_params({"accuracy": {"min": 0.9}})
    rejected = decide(record(accuracy=0.5), gate, None, NOW)
    write_blessing(storage, model_dir, rejected)
    assert sorted(p.name for p in (tmp_path / "run-1/blessing").iterdir()) == [
        "NOT_BLESSED",
        "blessing.json",
    ]
    assert (tmp_path / "run-1/blessing/NOT_BLESSED").read_text() == ""
    assert read_blessing(storage, model_dir) == rejected

    blessed = decide(record(accuracy=0.95), gate, None, NOW + 1)
    write_blessing(storage, model_dir, blessed)
    assert sorted(p.name for p in (tmp_path / "run-1/blessing").iterdir()) == [
        "BLESSED",
        "blessing.json",
    ]
    assert json.loads((tmp_path / "run-1/blessing/blessing.json").read_text())["blessed"]
    assert read_blessing(storage, model_dir) == blessed


def test_read_blessing_before_the_gate_ran(tmp_path: Path) -> None:
    assert read_blessing(LocalStorage(), str(tmp_path)) is None


def _write_record(model_dir: Path, step: int, eval_dir: str = "eval") -> EvalRecord:
    rec = EvalRecord(
        global_step=step,
        metrics={"loss": 1.0 / step},
        checkpoint_path=f"{model_dir}/ckpt-{step}",
        timestamp=NOW,
        eval_steps=5,
    )
    LocalStorage().write_text(
        eval_record_name(f"{model_dir}/{eval_dir}", step), rec.model_dump_json()
    )
    return rec


def test_read_final_eval_takes_the_highest_step(tmp_path: Path) -> None:
    records = {step: _write_record(tmp_path, step) for step in (100, 200, 400, 300)}
    (tmp_path / "eval/events.out.tfevents.1").write_bytes(b"")
    (tmp_path / "eval/record-000000000500.json.tmp-1a2b3c4d").write_text("{partial")
    assert read_final_eval(LocalStorage(), str(tmp_path), max_steps=400) == records[400]


def test_read_final_eval_uses_the_named_eval_dir(tmp_path: Path) -> None:
    _write_record(tmp_path, 60, eval_dir="eval")
    final = _write_record(tmp_path, 50, eval_dir="eval_holdout")
    found = read_final_eval(
        LocalStorage(), str(tmp_path), max_steps=50, eval_dir_name="eval_holdout"
    )
    assert found == final


def test_read_final_eval_before_the_final_checkpoint(tmp_path: Path) -> None:
    _write_record(tmp_path, 300)
    with pytest.raises(EvaluatorNotFinished, match="is for step 300, but the final checkpoint"):
        read_final_eval(LocalStorage(), str(tmp_path), max_steps=400)


def test_read_final_eval_without_records(tmp_path: Path) -> None:
    with pytest.raises(EvaluatorNotFinished) as error:
        read_final_eval(LocalStorage(), str(tmp_path), max_steps=400)
    assert str(error.value) == (
        f"the evaluator did not finish: no eval records in {tmp_path}/eval; it writes "
        f"{tmp_path}/eval/record-000000000400.json after evaluating the final checkpoint"
    )


def test_read_final_eval_needs_max_steps(tmp_path: Path) -> None:
    with pytest.raises(GateError) as error:
        read_final_eval(LocalStorage(), str(tmp_path), max_steps=None)
    assert str(error.value) == (
        "train_spec.max_steps is unset (train_forever): there is no final checkpoint to gate; "
        "set max_steps"
    )
