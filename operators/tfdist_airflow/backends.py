"""Where role processes run, as plain data that tasks and triggers can pass around."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tfdist.launch.base import JobHandle
from tfdist.launch.local import LocalLauncher, load_handle


def default_run_root() -> str:
    """`$TFDIST_RUN_ROOT`, else `$AIRFLOW_HOME/tfdist/runs`."""
    if os.environ.get("TFDIST_RUN_ROOT"):
        return os.environ["TFDIST_RUN_ROOT"]
    airflow_home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(airflow_home, "tfdist", "runs")


class LocalBackend(BaseModel):
    """Every role as a process on the Airflow worker's machine (the embedded default).

    `python` is the interpreter that runs the roles; by default the worker's own, which then
    needs the `tfdist[trainer]` extra. The run root must be on a disk that the tasks launching,
    watching and tearing down a job all see (one machine: LocalExecutor or `dags test`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local"] = "local"
    run_root: str | None = None
    python: str | None = None

    def root(self) -> Path:
        return Path(self.run_root or default_run_root())

    def launcher(self, scope: str) -> LocalLauncher:
        launcher = LocalLauncher(self.root() / scope)
        if self.python:
            launcher.python = self.python
        return launcher

    def handles(self, scope: str) -> list[JobHandle]:
        """Every launch made in this scope, oldest first."""
        paths = sorted((self.root() / scope).glob("*/handle.json"), key=os.path.getmtime)
        return [load_handle(path.parent) for path in paths]


Backend = LocalBackend


def backend_from_dict(data: dict[str, Any]) -> Backend:
    return LocalBackend.model_validate(data)
