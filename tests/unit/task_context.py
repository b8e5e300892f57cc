"""A hand-made Airflow task context for calling tfdist's operators directly: the fields they
read, and one run's XComs behind `xcom_push` and `xcom_pull`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tfdist_airflow.contracts import RETURN_KEY, Launched


class TaskInstance:
    """The TaskInstance methods tfdist's tasks call. XComs are kept by (task id, key); what
    this instance pushes is kept under `task_id`."""

    def __init__(
        self, xcoms: dict[tuple[str, str], Any], task_id: str = "launch", try_number: int = 1
    ) -> None:
        self.xcoms = xcoms
        self.task_id = task_id
        self.try_number = try_number

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = RETURN_KEY) -> Any:
        return self.xcoms.get((task_ids, key))


def context(
    launched: dict[str, Any] | None = None,
    *,
    dag_id: str = "nightly",
    run_id: str = "run-1",
    try_number: int = 1,
) -> Any:
    """The context of a task of run `run_id`; `launched`: what task `launch` handed over."""
    xcoms: dict[tuple[str, str], Any] = {}
    if launched is not None:
        xcoms[("launch", Launched.key)] = launched
    ti = TaskInstance(xcoms, try_number=try_number)
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": run_id, "ti": ti}


def launched(ctx: Any) -> dict[str, Any]:
    """What the launch task of `ctx` handed over."""
    value: dict[str, Any] = ctx["ti"].xcom_pull("launch", Launched.key)
    return value
