"""From one run's task instances and XComs to the Training view: which tasks form each step.

Plain rows in, a `TrainingView` out; storage is injected. The API server's app fills the rows
from its database; tests fill them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tfdist.deploy import Deployment
from tfdist.spec import JobSpec
from tfdist_airflow.view.goodput import goodput_html
from tfdist_airflow.view.model import RoleTask, StepView, TrainingView, build_step
from tfdist_airflow.view.read import StorageOf, read_step

LAUNCH = "LaunchRolesOperator"
WATCH = "WatchRoleOperator"
GATE = "BlessingGateOperator"
DEPLOY = "DeployModelOperator"
RETURN = "return_value"
XComs = Mapping[tuple[str, str], Any]  # (task_id, key) -> value, unmapped tasks only


@dataclass(frozen=True)
class TaskRow:
    """The columns of a task instance the view uses."""

    task_id: str
    operator: str | None
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
        if row.operator != WATCH or _group(row.task_id) != group:
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


def _pick(rows: Sequence[TaskRow], operator: str, owned: Sequence[str]) -> TaskRow | None:
    """The task of `operator` that belongs to this step: one that wrote about its model
    directory (`owned`), else the only one in the run."""
    candidates = [row for row in rows if row.operator == operator]
    for row in candidates:
        if row.task_id in owned:
            return row
    return candidates[0] if len(candidates) == 1 else None


def _deployment(value: Any, model_dir: str) -> Deployment | None:
    try:
        deployment = Deployment.model_validate(value)
    except ValidationError:
        return None
    return deployment if deployment.model_dir == model_dir else None


def _owned(xcoms: XComs, key: str, model_dir: str) -> list[str]:
    return [
        task_id
        for (task_id, xcom_key), value in xcoms.items()
        if xcom_key == key and isinstance(value, dict) and value.get("model_dir") == model_dir
    ]


def _step(
    launch: TaskRow, rows: Sequence[TaskRow], xcoms: XComs, storage_of: StorageOf
) -> StepView:
    group = _group(launch.task_id) or launch.task_id
    pushed = xcoms.get((launch.task_id, RETURN))
    if not isinstance(pushed, dict) or "spec" not in pushed:
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
    spec = JobSpec.model_validate(pushed["spec"])
    handle: dict[str, Any] = pushed.get("handle") or {}
    roles = [str(role) for role in handle.get("roles", ())]
    found = read_step(storage_of, spec.model_dir, spec.eval_spec.dir_name, handle)
    gate = _pick(rows, GATE, _owned(xcoms, "blessing", spec.model_dir))
    deploy = _pick(rows, DEPLOY, _owned(xcoms, RETURN, spec.model_dir))
    deployment = None
    if deploy is not None:
        deployment = _deployment(xcoms.get((deploy.task_id, RETURN)), spec.model_dir)
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
    ).model_copy(update={"goodput_html": goodput_html(xcoms, _group(launch.task_id))})


def collect_view(
    *,
    dag_id: str,
    run_id: str,
    run_state: str | None,
    rows: Sequence[TaskRow],
    xcoms: XComs,
    storage_of: StorageOf,
) -> TrainingView:
    """The view of every train-and-evaluate step of one run, in task id order."""
    launches = sorted((row for row in rows if row.operator == LAUNCH), key=lambda r: r.task_id)
    return TrainingView(
        dag_id=dag_id,
        run_id=run_id,
        run_state=run_state,
        steps=tuple(_step(launch, rows, xcoms, storage_of) for launch in launches),
    )
