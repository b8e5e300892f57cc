"""Pure naming for Airflow runs: per-run model directories and scopes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import RoleId, Scope, restart_scope

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


def fatal_peers(role: str, roles: list[str], uses_parameter_servers: bool) -> list[str]:
    """The other roles whose failure ends the job, so `role` must then be stopped too.

    Without this, a ps or an evaluator would wait forever for a chief that has crashed.
    """
    return [
        peer
        for peer in roles
        if peer != role
        and restart_scope(RoleId.parse(peer).kind, uses_parameter_servers) is Scope.JOB
    ]


def unfinished_step(statuses: Mapping[str, RoleStatus]) -> str | None:
    """Why a train-and-evaluate step did not finish, judged by how its roles stand when its
    teardown runs; None when every role succeeded.

    `statuses` are read before the teardown stops anything: a role still running then is
    one the teardown stops (the run was marked failed, or a peer failed).
    """
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
