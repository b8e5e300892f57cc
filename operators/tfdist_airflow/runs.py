"""Pure parts of the Airflow binding: per-run model directories and scopes, and how a step's
teardown judges the step."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tfdist.backend import RoleState, RoleStatus

if TYPE_CHECKING:
    from tfdist.supervisor import Outcome

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
UNKNOWN = "unknown"  # a task state that could not be read
# A killed watch task in these states was ended by a user (marked failed or success, or its
# run was): its role must not run on unseen.
_ENDED_BY_USER = frozenset({"failed", "success", "skipped", "removed", "upstream_failed"})


def run_name(run_id: str) -> str:
    """A path- and label-safe name for an Airflow run id (manual runs have no logical date)."""
    name = _UNSAFE.sub("-", run_id).strip("-.")
    if not name:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return name


def run_model_dir(base: str, dag_id: str, run_id: str) -> str:
    """`<base>/<dag_id>/<run>`: a rerun of the same run resumes; other runs never share it."""
    return f"{base.rstrip('/')}/{run_name(dag_id)}/{run_name(run_id)}"


def run_scope(dag_id: str, run_id: str, group_id: str) -> str:
    """Where one train-and-evaluate step of one run keeps its launches, relative to a root."""
    return f"{run_name(dag_id)}/{run_name(run_id)}/{run_name(group_id)}"


def unfinished_step(
    statuses: Mapping[str, RoleStatus], outcome: Outcome | None = None
) -> str | None:
    """Why a train-and-evaluate step did not finish, judged by the supervisor's outcome when
    it decided one, else by how the roles stand when the teardown runs; None when it finished.

    `statuses` are read before the teardown stops anything: a role still running then is
    one the teardown stops (the run was marked failed, or a peer failed).
    """
    if outcome is not None:
        return None if outcome.succeeded else outcome.reason
    running = [name for name, s in statuses.items() if not s.state.finished]
    failed = [
        f"{name} ({_exit(s)})" if _exit(s) else name
        for name, s in statuses.items()
        if s.state is RoleState.FAILED
    ]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} failed")
    if running:
        parts.append(f"{', '.join(running)} still running, stopped now")
    return "; ".join(parts) or None


def _exit(status: RoleStatus) -> str:
    code = f"exit code {status.exit_code}" if status.exit_code is not None else ""
    return ", ".join(filter(None, [code, "" if status.detail == "exited" else status.detail]))


def kill_stops_role(state: str | None) -> bool:
    """Whether a watch task's trigger, cancelled "by user action", stops its role, judged by
    the task's state then: ended by a user (or unknown: a kill must reach the role) stops it;
    still deferred (the trigger moved to another triggerer) or cleared (None, scheduled,
    restarting, ...: its next try follows the role again) leaves it running."""
    return state == UNKNOWN or state in _ENDED_BY_USER
