"""The Training view's model, built by value from what a run wrote: no I/O, no Airflow.

Inputs are the role tasks' rows, the roles' progress (from their logs), the evaluator's records,
the gate's blessing and the deploy's record; the output is a frozen `StepView` per
train-and-evaluate step. Nothing of the job spec is kept, so `trainer.env` never reaches a page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from tfdist.deploy import Deployment
from tfdist.gate import Baseline, Blessing, MetricThreshold
from tfdist.records import EvalRecord

ROLE_ORDER = ("chief", "worker", "ps", "evaluator")
_STEP = re.compile(r"\bstep (\d+)\b")
_RATE = re.compile(r"(\d+(?:\.\d+)?) (?:steps|closures|requests)/s\b")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoleTask(Frozen):
    """One role's watch task instance, as the metadata database has it."""

    role: str
    state: str | None
    start: datetime | None = None
    end: datetime | None = None
    try_number: int = 1


class Progress(Frozen):
    """What a role's own run directory says: when it started and ended, its last logged step
    and rate. Absent where the backend keeps no such directory (Kubernetes)."""

    started: datetime | None = None
    ended: datetime | None = None
    last_step: int | None = None
    steps_per_sec: float | None = None
    rate_unit: str = "steps"  # `closures` for a worker under parameter-server training
    restarts: int | None = None  # times the role was started again, where the backend says


class RoleRow(Frozen):
    role: str
    state: str
    start: datetime | None
    end: datetime | None
    restarts: int
    last_step: int | None
    steps_per_sec: float | None
    rate_unit: str = "steps"


class LineKind(StrEnum):
    MIN = "min"
    MAX = "max"
    CHANGE = "change"  # the bound a change threshold puts on the value, given the baseline
    BASELINE = "baseline"


class Line(Frozen):
    """A horizontal line on a metric's chart."""

    kind: LineKind
    value: float
    label: str


class Series(Frozen):
    """One metric against the global step, with its gate lines."""

    metric: str
    points: tuple[tuple[int, float], ...]
    lines: tuple[Line, ...] = ()


class Decision(Frozen):
    blessed: bool
    global_step: int
    metrics: dict[str, float]
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    baseline_version: int | None


class Deployed(Frozen):
    model_name: str
    version: int
    path: str


class StepView(Frozen):
    """One train-and-evaluate step of a run."""

    group_id: str
    model_dir: str
    roles: tuple[RoleRow, ...]
    series: tuple[Series, ...]
    decision: Decision | None
    gate_state: str | None = None
    deployed: Deployed | None = None
    deploy_state: str | None = None
    problems: tuple[str, ...] = ()  # what could not be read, said plainly
    goodput_html: str = ""  # tfdist_airflow.view.goodput


class TrainingView(Frozen):
    dag_id: str
    run_id: str
    run_state: str | None
    steps: tuple[StepView, ...]


def parse_progress(log_text: str) -> Progress:
    """The last `step N` and the last `X steps/s` (or closures/s, requests/s) in a role's log."""
    steps = _STEP.findall(log_text)
    rates = _RATE.findall(log_text)
    return Progress(
        last_step=int(steps[-1]) if steps else None,
        steps_per_sec=float(rates[-1]) if rates else None,
    )


def role_key(role: str) -> tuple[int, int, str]:
    """chief, workers, ps, evaluator; by index within a kind."""
    kind, _, index = role.rpartition("-")
    order = ROLE_ORDER.index(kind) if kind in ROLE_ORDER else len(ROLE_ORDER)
    return (order, int(index) if index.isdigit() else 0, role)


def role_rows(tasks: Iterable[RoleTask], progress: Mapping[str, Progress]) -> tuple[RoleRow, ...]:
    """One row per role. Restarts are the backend's count where it keeps one (a local run
    directory), else the watch task's tries after the first. The role's own start and end are
    preferred to its watch task's, which may begin late and resume after a deferral."""
    rows = []
    for task in sorted(tasks, key=lambda t: role_key(t.role)):
        seen = progress.get(task.role, Progress())
        rows.append(
            RoleRow(
                role=task.role,
                state=task.state or "none",
                start=seen.started or task.start,
                end=seen.ended or task.end,
                restarts=max(task.try_number - 1, 0) if seen.restarts is None else seen.restarts,
                last_step=seen.last_step,
                steps_per_sec=seen.steps_per_sec,
                rate_unit=seen.rate_unit,
            )
        )
    return tuple(rows)


def threshold_lines(threshold: MetricThreshold, baseline: float | None) -> tuple[Line, ...]:
    """The bounds the gate applies to one metric, as lines; change limits need a baseline."""
    lines = []
    if threshold.min is not None:
        lines.append(Line(kind=LineKind.MIN, value=threshold.min, label=f"min {threshold.min:g}"))
    if threshold.max is not None:
        lines.append(Line(kind=LineKind.MAX, value=threshold.max, label=f"max {threshold.max:g}"))
    change = threshold.change
    if change is not None and baseline is not None:
        if change.absolute is not None:
            lines.append(
                Line(
                    kind=LineKind.CHANGE,
                    value=baseline + change.absolute,
                    label=f"change limit {change.absolute:+g}",
                )
            )
        if change.relative is not None:
            lines.append(
                Line(
                    kind=LineKind.CHANGE,
                    value=baseline + change.relative * abs(baseline),
                    label=f"change limit {change.relative * 100:+g}%",
                )
            )
    return tuple(lines)


def eval_series(records: Iterable[EvalRecord], blessing: Blessing | None) -> tuple[Series, ...]:
    """Every metric the evaluator wrote, by global step (the newest record of a step wins)."""
    by_step: dict[int, EvalRecord] = {}
    for record in sorted(records, key=lambda r: r.timestamp):
        by_step[record.global_step] = record
    ordered = [by_step[step] for step in sorted(by_step)]
    metrics = sorted({name for record in ordered for name in record.metrics})
    thresholds = blessing.thresholds if blessing else {}
    baseline: Baseline | None = blessing.baseline if blessing else None
    series = []
    for metric in metrics:
        base = baseline.metrics.get(metric) if baseline else None
        lines: tuple[Line, ...] = ()
        if metric in thresholds:
            lines = threshold_lines(thresholds[metric], base)
        if base is not None and baseline is not None:
            label = f"deployed v{baseline.version} {base:.4g}"
            lines = (*lines, Line(kind=LineKind.BASELINE, value=base, label=label))
        points = tuple(
            (record.global_step, record.metrics[metric])
            for record in ordered
            if metric in record.metrics
        )
        series.append(Series(metric=metric, points=points, lines=lines))
    return tuple(series)


def decision(blessing: Blessing | None) -> Decision | None:
    if blessing is None:
        return None
    return Decision(
        blessed=blessing.blessed,
        global_step=blessing.global_step,
        metrics=blessing.metrics,
        reasons=blessing.reasons,
        notes=blessing.notes,
        baseline_version=blessing.baseline.version if blessing.baseline else None,
    )


def deployed(deployment: Deployment | None) -> Deployed | None:
    if deployment is None:
        return None
    return Deployed(
        model_name=deployment.model_name, version=deployment.version, path=deployment.path
    )


def build_step(
    *,
    group_id: str,
    model_dir: str,
    tasks: Sequence[RoleTask],
    progress: Mapping[str, Progress],
    records: Sequence[EvalRecord],
    blessing: Blessing | None,
    deployment: Deployment | None,
    gate_state: str | None = None,
    deploy_state: str | None = None,
    problems: Sequence[str] = (),
) -> StepView:
    """The view of one train-and-evaluate step from what its run wrote."""
    return StepView(
        group_id=group_id,
        model_dir=model_dir,
        roles=role_rows(tasks, progress),
        series=eval_series(records, blessing),
        decision=decision(blessing),
        gate_state=gate_state,
        deployed=deployed(deployment),
        deploy_state=deploy_state,
        problems=tuple(problems),
    )
