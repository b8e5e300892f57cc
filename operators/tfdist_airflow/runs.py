"""Pure naming and policy for Airflow runs: per-run model directories, scopes, relaunch rules."""

from __future__ import annotations

import re
from enum import StrEnum

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


class Relaunch(StrEnum):
    ROLE = "role"  # start this role again alone; the others keep going
    JOB = "job"  # only a restart of every role (from the last checkpoint) is safe


def relaunch_scope(role: str, uses_parameter_servers: bool) -> Relaunch:
    """Which restart is safe after `role` died.

    The evaluator is stateless between checkpoints; a worker under parameter-server training
    is a stateless executor the coordinator reconnects to. A chief, a ps, or any member of an
    all-reduce ring cannot be replaced alone: the other roles hold state or collectives with it.
    """
    kind = role.rsplit("-", 1)[0]
    if kind == "evaluator" or (kind == "worker" and uses_parameter_servers):
        return Relaunch.ROLE
    return Relaunch.JOB


def fatal_peers(role: str, roles: list[str], uses_parameter_servers: bool) -> list[str]:
    """The other roles whose failure ends the job, so `role` must then be stopped too.

    Without this, a ps or an evaluator would wait forever for a chief that has crashed.
    """
    return [
        peer
        for peer in roles
        if peer != role and relaunch_scope(peer, uses_parameter_servers) is Relaunch.JOB
    ]
