"""Pure naming for Airflow runs: per-run model directories and scopes."""

from __future__ import annotations

import re

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
