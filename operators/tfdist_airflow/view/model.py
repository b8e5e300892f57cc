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
from tfdist.records import Admission, EvalRecord
from tfdist_airflow.view.bar import Bar
from tfdist_airflow.view.margins import Margin, margins
from tfdist_airflow.view.states import (
    Ended,
    Launch,
    RoleExit,
    Status,
    StopRequest,
    role_status,
    step_sentence,
)

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
    exit: RoleExit | None = None  # how its current process ended, where the backend says


class RoleRow(Frozen):
    role: str
    state: str  # the watch task's
    status: Status  # the role's own, in the model's words
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
    margins: tuple[Margin, ...] = ()  # for every bound, passed or not


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
    training: tuple[Series, ...] = ()  # the chief's loss, learning rate and steps/s
    sentence: str = ""  # the step's outcome, or where it is, in one sentence
    max_steps: int | None = None
    goodput_html: str = ""  # tfdist_airflow.view.goodput
    admission: Admission | None = None  # the launch's wait in a queue (Kueue)


class TrainingView(Frozen):
    dag_id: str
    run_id: str
    run_state: str | None
    steps: tuple[StepView, ...]


def _last(pattern: re.Pattern[str], lines: Sequence[str]) -> str | None:
    """The last match of `pattern` in `lines`, searching from the end."""
    for line in reversed(lines):
        if found := pattern.findall(line):
            return str(found[-1])
    return None


def parse_progress(log_text: str) -> Progress:
    """The last `step N` and the last `X steps/s` (or closures/s, requests/s) in a role's log."""
    lines = log_text.splitlines()
    step, rate = _last(_STEP, lines), _last(_RATE, lines)
    return Progress(
        last_step=int(step) if step is not None else None,
        steps_per_sec=float(rate) if rate is not None else None,
    )


def role_key(role: str) -> tuple[int, int, str]:
    """chief, workers, ps, evaluator; by index within a kind."""
    kind, _, index = role.rpartition("-")
    order = ROLE_ORDER.index(kind) if kind in ROLE_ORDER else len(ROLE_ORDER)
    return (order, int(index) if index.isdigit() else 0, role)


def role_rows(
    tasks: Iterable[RoleTask],
    progress: Mapping[str, Progress],
    launch: Launch | None = None,
    stops: Sequence[StopRequest] = (),
) -> tuple[RoleRow, ...]:
    """One row per role. Restarts are the backend's count where it keeps one (a local run
    directory), else the watch task's tries after the first. The role's own start and end are
    preferred to its watch task's, which may begin late and resume after a deferral."""
    rows = []
    for task in sorted(tasks, key=lambda t: role_key(t.role)):
        seen = progress.get(task.role, Progress())
        restarts = max(task.try_number - 1, 0) if seen.restarts is None else seen.restarts
        status = role_status(
            role=task.role,
            task_state=task.state,
            started=seen.started is not None,
            ended=seen.exit,
            restarts=restarts,
            last_step=seen.last_step,
            launch=launch or Launch(),
            stops=stops,
        )
        rows.append(
            RoleRow(
                role=task.role,
                state=task.state or "none",
                status=status,
                start=seen.started or task.start,
                end=seen.ended or task.end,
                restarts=restarts,
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


def eval_series(
    records: Iterable[EvalRecord], blessing: Blessing | None, bar: Bar | None = None
) -> tuple[Series, ...]:
    """Every metric the evaluator wrote, by global step (the newest record of a step wins), with
    the gate's lines: from its decision once made, else from the bar it will apply."""
    by_step: dict[int, EvalRecord] = {}
    for record in sorted(records, key=lambda r: r.timestamp):
        by_step[record.global_step] = record
    ordered = [by_step[step] for step in sorted(by_step)]
    metrics = sorted({name for record in ordered for name in record.metrics})
    source = blessing or bar
    thresholds = source.thresholds if source else {}
    baseline: Baseline | None = source.baseline if source else None
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


TRAINING_TAGS = {
    "loss": "training loss",
    "learning_rate": "learning rate",
    "steps_per_sec": "steps/s",
}


def training_series(found: Iterable[tuple[str, int, float]]) -> tuple[Series, ...]:
    """The chief's training scalars by global step, in `TRAINING_TAGS` order; a step written
    again (after a restart from a checkpoint) keeps its latest value."""
    by_tag: dict[str, dict[int, float]] = {}
    for tag, step, value in found:
        if tag in TRAINING_TAGS:
            by_tag.setdefault(tag, {})[step] = value
    return tuple(
        Series(metric=TRAINING_TAGS[tag], points=tuple(sorted(by_tag[tag].items())))
        for tag in TRAINING_TAGS
        if tag in by_tag
    )


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
        margins=margins(blessing.metrics, blessing.thresholds, blessing.baseline),
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
    launch: Launch | None = None,
    stops: Sequence[StopRequest] = (),
    run_over: bool = False,
    bar: Bar | None = None,
    training: Iterable[tuple[str, int, float]] = (),
) -> StepView:
    """The view of one train-and-evaluate step from what its run wrote; `run_over`: the DAG
    run has ended."""
    launch = launch or Launch()
    roles = role_rows(tasks, progress, launch, stops)
    shipped = deployed(deployment)
    sentence = ""
    if roles:
        sentence = step_sentence(
            statuses=[row.status for row in roles],
            step=training_step(roles),
            launch=launch,
            stops=stops,
            ended=Ended(
                run_over=run_over,
                blessed=blessing.blessed if blessing else None,
                not_blessed_because="; ".join(blessing.reasons) if blessing else None,
                gate_state=gate_state,
                deployed=f"{shipped.model_name} version {shipped.version}" if shipped else None,
            ),
        )
    return StepView(
        group_id=group_id,
        model_dir=model_dir,
        roles=roles,
        series=eval_series(records, blessing, bar),
        training=training_series(training),
        decision=decision(blessing),
        gate_state=gate_state,
        deployed=shipped,
        deploy_state=deploy_state,
        problems=tuple(problems),
        sentence=sentence,
        max_steps=launch.max_steps,
        admission=launch.admission,
    )


def training_step(roles: Sequence[RoleRow]) -> int | None:
    """How far training got: the chief's last step, else the furthest any role logged."""
    chief = [row.last_step for row in roles if row.role.startswith("chief")]
    if chief and chief[0] is not None:
        return chief[0]
    steps = [row.last_step for row in roles if row.last_step is not None]
    return max(steps) if steps else None
