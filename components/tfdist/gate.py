"""The gate: bless or reject the final evaluation against thresholds and the deployed baseline.

Follows TFX's Evaluator/TFMA contract. Thresholds come from DAG params in this JSON shape,
one entry per metric the evaluator writes::

    {
      "accuracy": {"min": 0.9},
      "loss": {"max": 0.3,
               "change": {"direction": "lower_is_better", "absolute": 0.05}}
    }

- `min` / `max`: inclusive bounds on the candidate's value; unset means unbounded (±inf).
- `change`: compared with the baseline (the deployed model), skipped when none is deployed.
  `direction` is `higher_is_better` or `lower_is_better`. Each limit bounds a signed change:
  `absolute` bounds `candidate - baseline`; `relative` bounds
  `(candidate - baseline) / |baseline|`, which is `candidate / baseline - 1` for a positive
  baseline (a zero baseline gives ±inf by the sign of the change, or 0 when equal). With
  `lower_is_better` the change must be <= the limit, with `higher_is_better` >= the limit
  (as TFMA; a change equal to the limit up to float rounding passes). So
  `{"direction": "lower_is_better", "absolute": 0.05}` lets loss rise by at most 0.05, and
  `{"direction": "higher_is_better", "relative": -0.01}` lets accuracy fall by at most 1%;
  a positive limit demands an improvement.

With no thresholds at all nothing is blessed: tfdist never deploys an unvalidated model.
A NaN metric fails every threshold on it.

`model_dir/blessing/` holds an empty `BLESSED` or `NOT_BLESSED` marker (TFX's contract) and
`blessing.json`, the full `Blessing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tfdist.records import EvalRecord, eval_record_name, latest_record
from tfdist.spec import Frozen, dotted, format_errors

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails
from tfdist.storage import Storage, join

BLESSING_DIR = "blessing"
BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"
BLESSING_JSON = "blessing.json"
NO_THRESHOLDS = "no thresholds configured; tfdist never deploys an unvalidated model"
NO_BASELINE = "no baseline deployed yet: change thresholds skipped"


class GateError(ValueError):
    """Thresholds that cannot be applied; the message names the metric and the field."""


class EvaluatorNotFinished(RuntimeError):
    """The evaluator left no record for the final checkpoint."""


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}; leave it out for no limit")
    return value


Limit = Annotated[float | None, AfterValidator(_finite)]


class ChangeThreshold(Frozen):
    """Limits on the change from the baseline; see the module docstring for the signs."""

    direction: Direction
    absolute: Limit = None
    relative: Limit = None

    @field_validator("direction", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.absolute is None and self.relative is None:
            raise ValueError("set `absolute` and/or `relative`")
        return self


class MetricThreshold(Frozen):
    """Bounds on one metric's value and, optionally, on its change from the baseline."""

    min: Limit = None
    max: Limit = None
    change: ChangeThreshold | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min is None and self.max is None and self.change is None:
            raise ValueError("set at least one of `min`, `max` or `change`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; no value can pass")
        return self


class GateSpec(Frozen):
    """Thresholds per metric name."""

    thresholds: dict[str, MetricThreshold] = Field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> GateSpec:
        """Build from the JSON shape in the module docstring, or raise `GateError`."""
        if params is None:
            return cls()
        if not isinstance(params, Mapping):
            raise GateError(
                f"gate thresholds: expected a mapping of metric name to threshold, such as "
                f'{{"accuracy": {{"min": 0.9}}}}, got {params!r}'
            )
        for metric, threshold in params.items():
            if not isinstance(threshold, Mapping):
                raise GateError(
                    f"gate threshold {metric}: expected a mapping such as "
                    f'{{"min": 0.9}} or {{"max": 0.3}}, got {threshold!r}'
                )
        try:
            return cls.model_validate({"thresholds": dict(params)})
        except ValidationError as error:
            raise GateError(
                format_errors(
                    error, "invalid gate thresholds", where=lambda loc: dotted(loc[1:]), fix=_fix
                )
            ) from None

    def to_params(self) -> dict[str, Any]:
        """The compact JSON shape `from_params` reads."""
        return {
            metric: threshold.model_dump(mode="json", exclude_none=True)
            for metric, threshold in self.thresholds.items()
        }


_FIELDS = {1: "min, max or change", 2: "direction, absolute or relative"}
_HINTS = {"direction": "; set it to higher_is_better or lower_is_better"}


def _fix(item: ErrorDetails) -> str | None:
    location = [str(part) for part in item["loc"]][1:]  # below "thresholds"
    if item["type"] == "extra_forbidden":
        return f"unknown field; a threshold takes {_FIELDS.get(len(location) - 1, '')}"
    if item["type"] == "missing":
        return "required" + _HINTS.get(location[-1], "")
    return None


class Baseline(Frozen):
    """The model now deployed, as the gate compares against it."""

    version: int
    metrics: dict[str, float]
    model_dir: str
    run_id: str | None = None


class Blessing(Frozen):
    """The gate's decision on one candidate, written to `model_dir/blessing/blessing.json`."""

    blessed: bool
    metrics: dict[str, float]
    global_step: int
    checkpoint_path: str
    model_dir: str
    thresholds: dict[str, MetricThreshold]
    baseline: Baseline | None
    reasons: tuple[str, ...] = ()  # why it was not blessed; empty when blessed
    notes: tuple[str, ...] = ()
    decided_at: float


def _num(value: float) -> str:
    return f"{value:.6g}"


def _signed(value: float) -> str:
    return f"{value:+.6g}"


def _percent(value: float) -> str:
    return f"{value * 100:+.4g}%"


def relative_change(candidate: float, baseline: float) -> float:
    """`(candidate - baseline) / |baseline|`; ±inf by the change's sign for a zero baseline."""
    difference = candidate - baseline
    if baseline == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / abs(baseline)


def _value_failures(metric: str, value: float, threshold: MetricThreshold) -> list[str]:
    if math.isnan(value):
        return [f"{metric} is NaN"]
    failures = []
    if threshold.min is not None and not value >= threshold.min:
        failures.append(f"{metric} {_num(value)} is below min {_num(threshold.min)}")
    if threshold.max is not None and not value <= threshold.max:
        failures.append(f"{metric} {_num(value)} is above max {_num(threshold.max)}")
    return failures


def _change_failures(
    metric: str, value: float, change: ChangeThreshold, baseline: Baseline
) -> list[str]:
    before = baseline.metrics[metric]
    if math.isnan(value) or math.isnan(before):
        return [f"{metric}: cannot compare with baseline v{baseline.version}: a value is NaN"]
    lower = change.direction is Direction.LOWER_IS_BETTER
    bound = "at most" if lower else "at least"
    observed = f"vs baseline v{baseline.version} ({_num(before)} -> {_num(value)})"
    limits = (
        ("change", change.absolute, value - before, _signed),
        ("relative change", change.relative, relative_change(value, before), _percent),
    )
    failures = []
    for name, limit, actual, show in limits:
        if limit is None:
            continue
        at_limit = math.isclose(actual, limit, rel_tol=1e-9, abs_tol=1e-12)  # float rounding
        if not (at_limit or (actual <= limit if lower else actual >= limit)):
            failures.append(
                f"{metric}: {name} {show(actual)} {observed}; {change.direction} "
                f"allows {bound} {show(limit)}"
            )
    return failures


def decide(
    record: EvalRecord,
    gate: GateSpec,
    baseline: Baseline | None,
    now: float,
    *,
    model_dir: str | None = None,
) -> Blessing:
    """Bless the evaluated checkpoint when every threshold passes.

    `model_dir` defaults to the checkpoint's directory. Raises `GateError` when a threshold
    names a metric the evaluator did not write.
    """
    missing = sorted(set(gate.thresholds) - set(record.metrics))
    if missing:
        raise GateError(
            f"gate thresholds name {', '.join(missing)}, which the evaluator did not write; "
            f"it wrote: {', '.join(sorted(record.metrics))}. Fix the metric name, or add the "
            "metric to the trainer's eval_metrics"
        )
    reasons: list[str] = []
    notes: list[str] = []
    if not gate.thresholds:
        reasons.append(NO_THRESHOLDS)
    has_change = any(t.change is not None for t in gate.thresholds.values())
    if has_change and baseline is None:
        notes.append(NO_BASELINE)
    for metric, threshold in sorted(gate.thresholds.items()):
        value = record.metrics[metric]
        reasons += _value_failures(metric, value, threshold)
        if threshold.change is None or baseline is None:
            continue
        if metric not in baseline.metrics:
            notes.append(
                f"baseline v{baseline.version} has no {metric}: its change threshold skipped"
            )
            continue
        reasons += _change_failures(metric, value, threshold.change, baseline)
    return Blessing(
        blessed=not reasons,
        metrics=record.metrics,
        global_step=record.global_step,
        checkpoint_path=record.checkpoint_path,
        model_dir=model_dir or record.checkpoint_path.rsplit("/", 1)[0],
        thresholds=gate.thresholds,
        baseline=baseline,
        reasons=tuple(reasons),
        notes=tuple(notes),
        decided_at=now,
    )


def write_blessing(storage: Storage, model_dir: str, blessing: Blessing) -> None:
    """Write `blessing.json`, then the marker; a stale marker of the other kind is removed."""
    directory = join(model_dir, BLESSING_DIR)
    marker, stale = (BLESSED, NOT_BLESSED) if blessing.blessed else (NOT_BLESSED, BLESSED)
    storage.write_text(join(directory, BLESSING_JSON), blessing.model_dump_json(indent=1))
    storage.delete(join(directory, stale))
    storage.write_text(join(directory, marker), "")


def read_blessing(storage: Storage, model_dir: str) -> Blessing | None:
    """The decision written for `model_dir`, or None when the gate has not run."""
    text = storage.read_text(join(model_dir, BLESSING_DIR, BLESSING_JSON))
    return None if text is None else Blessing.model_validate_json(text)


def read_final_eval(
    storage: Storage, model_dir: str, *, max_steps: int | None, eval_dir_name: str = "eval"
) -> EvalRecord:
    """The evaluator's record of the final checkpoint (the one at `max_steps`)."""
    if max_steps is None:
        raise GateError(
            "train_spec.max_steps is unset (train_forever): there is no final checkpoint to "
            "gate; set max_steps"
        )
    eval_dir = join(model_dir, eval_dir_name)
    names = [name for name in storage.list(eval_dir) if name.endswith(".json")]
    latest = latest_record(names)
    text = storage.read_text(latest) if latest else None
    if text is None:
        raise EvaluatorNotFinished(
            f"the evaluator did not finish: no eval records in {eval_dir}; it writes "
            f"{eval_record_name(eval_dir, max_steps)} after evaluating the final checkpoint"
        )
    record = EvalRecord.model_validate_json(text)
    if record.global_step < max_steps:
        raise EvaluatorNotFinished(
            f"the evaluator did not finish: its latest record in {eval_dir} is for step "
            f"{record.global_step}, but the final checkpoint is at max_steps {max_steps}"
        )
    return record
