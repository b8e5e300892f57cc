"""From one run's task instances and XComs to the Training view: which tasks form each step.

Plain rows in, a `TrainingView` out; storage is injected. The API server's app fills the rows
from its database; tests fill them by hand. Tasks are found by the kind they declare
(`tfdist_airflow.contracts.TaskKind`), their hand-overs read as the contracts they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tfdist_airflow.contracts import RETURN_KEY, Deployed, Gated, Launched, TaskKind, read
from tfdist_airflow.view.bar import Bar
from tfdist_airflow.view.goodput import goodput_html
from tfdist_airflow.view.model import RoleTask, StepView, TrainingView, build_step
from tfdist_airflow.view.read import StorageOf, read_step
from tfdist_airflow.view.states import UNFINISHED_TASK, Launch, StopRequest

XComs = Mapping[tuple[str, str], Any]  # (task_id, key) -> value, unmapped tasks only
BarOf = Callable[[str], Bar | None]  # the gate task's id -> the bar it will apply


@dataclass(frozen=True)
class TaskRow:
    """The columns of a task instance the view uses."""

    task_id: str
    kind: str | None  # the `TaskKind` the task declared (Airflow's `custom_operator_name`)
    state: str | None
    map_index: int = -1
    rendered_map_index: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    try_number: int = 1


def _group(task_id: str) -> str:
    return task_id.rpartition(".")[0]


def _role_tasks(rows: Sequence[TaskRow], group: str, roles: Sequence[str]) -> list[RoleTask]:
    tasks = []
    for row in rows:
        if row.kind != TaskKind.WATCH or _group(row.task_id) != group:
            continue
        fallback = roles[row.map_index] if 0 <= row.map_index < len(roles) else row.task_id
        tasks.append(
            RoleTask(
                role=row.rendered_map_index or fallback,
                state=row.state,
                start=row.start,
                end=row.end,
                try_number=row.try_number,
            )
        )
    return tasks


def _pick(rows: Sequence[TaskRow], kind: TaskKind, owned: Sequence[str]) -> TaskRow | None:
    """The task of `kind` that belongs to this step: one that handed over something about its
    model directory (`owned`), else the only one in the run."""
    candidates = [row for row in rows if row.kind == kind]
    for row in candidates:
        if row.task_id in owned:
            return row
    return candidates[0] if len(candidates) == 1 else None


def _model_dir_of(value: Any) -> str | None:
    """The model directory a gate decision or a deployment is about; None for anything else."""
    if (gated := read(Gated, value)) is not None:
        return gated.blessing.model_dir
    if (deployed := read(Deployed, value)) is not None:
        return deployed.deployment.model_dir
    return None


def _owned(xcoms: XComs, model_dir: str) -> list[str]:
    """The tasks whose hand-over is about `model_dir`: a gate decision or a deployment."""
    return [
        task_id
        for (task_id, key), value in xcoms.items()
        if key == RETURN_KEY and _model_dir_of(value) == model_dir
    ]


def _step(
    launch: TaskRow,
    rows: Sequence[TaskRow],
    xcoms: XComs,
    storage_of: StorageOf,
    stops: Sequence[StopRequest] = (),
    run_over: bool = False,
    bar_of: BarOf | None = None,
) -> StepView:
    group = _group(launch.task_id) or launch.task_id
    launched = read(Launched, xcoms.get((launch.task_id, Launched.key)))
    if launched is None:
        return build_step(
            group_id=group,
            model_dir="",
            tasks=[],
            progress={},
            records=[],
            blessing=None,
            deployment=None,
            problems=[f"{launch.task_id} has not launched the roles yet ({launch.state})"],
        )
    spec, handle = launched.spec, launched.handle
    roles = list(handle.roles)
    found = read_step(
        storage_of, spec.model_dir, spec.eval_spec.dir_name, handle.model_dump(mode="json")
    )
    owned = _owned(xcoms, spec.model_dir)
    gate = _pick(rows, TaskKind.GATE, owned)
    deploy = _pick(rows, TaskKind.DEPLOY, owned)
    deployed = read(Deployed, xcoms.get((deploy.task_id, RETURN_KEY))) if deploy else None
    bar = bar_of(gate.task_id) if bar_of and gate and found.blessing is None else None
    deployment = None
    if deployed is not None and deployed.deployment.model_dir == spec.model_dir:
        deployment = deployed.deployment
    return build_step(
        group_id=group,
        model_dir=spec.model_dir,
        tasks=_role_tasks(rows, _group(launch.task_id), roles),
        progress=found.progress,
        records=found.records,
        blessing=found.blessing,
        deployment=deployment,
        gate_state=gate.state if gate else None,
        deploy_state=deploy.state if deploy else None,
        problems=found.problems,
        launch=Launch(
            policy=spec.restart_policy,
            uses_parameter_servers=spec.cluster.uses_parameter_servers,
            max_steps=spec.train_spec.max_steps,
            supervision=found.supervision,
            admission=found.admission,
        ),
        stops=stops,
        run_over=run_over,
        bar=bar,
        training=found.training,
    ).model_copy(update={"goodput_html": goodput_html(_teardown_value(rows, xcoms, launch))})


def _teardown_value(rows: Sequence[TaskRow], xcoms: XComs, launch: TaskRow) -> Any:
    """What the teardown task of the launch's step returned (its goodput), None if nothing."""
    group = _group(launch.task_id)
    for row in rows:
        if row.kind == TaskKind.STOP and _group(row.task_id) == group:
            return xcoms.get((row.task_id, RETURN_KEY))
    return None


def collect_view(
    *,
    dag_id: str,
    run_id: str,
    run_state: str | None,
    rows: Sequence[TaskRow],
    xcoms: XComs,
    storage_of: StorageOf,
    stops: Sequence[StopRequest] = (),
    bar_of: BarOf | None = None,
) -> TrainingView:
    """The view of every train-and-evaluate step of one run, in task id order; `stops`: users
    setting the run or its tasks failed (Airflow's audit log); `bar_of`: what a gate task will
    apply, for the charts before it decides."""
    run_over = run_state not in (*UNFINISHED_TASK, None)
    launches = sorted((row for row in rows if row.kind == TaskKind.LAUNCH), key=lambda r: r.task_id)
    return TrainingView(
        dag_id=dag_id,
        run_id=run_id,
        run_state=run_state,
        steps=tuple(
            _step(launch, rows, xcoms, storage_of, stops, run_over, bar_of) for launch in launches
        ),
    )
