"""The local backend's admission check: roles against CPUs and the open-file limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdist.backend import LaunchRefused
from tfdist.launch.capacity import (
    MAX_ROLES_ENV,
    LocalCapacity,
    capacity_problem,
    machine_capacity,
)
from tfdist.launch.local import LocalLauncher
from tfdist.spec import parse_spec

MACHINE = LocalCapacity(cpus=2, open_files=1024)


def test_limits_by_value() -> None:
    assert MACHINE.role_limit == 8
    assert MACHINE.file_limit == 224
    assert LocalCapacity(cpus=2, open_files=1024, max_roles=100).role_limit == 100
    assert capacity_problem(8, MACHINE) is None


def test_more_roles_than_cpus_allow() -> None:
    assert capacity_problem(9, MACHINE) == (
        "cluster: 9 roles are more than this machine runs locally (4 TensorFlow processes per "
        "CPU, 2 CPUs: at most 8); use fewer roles, run on Kubernetes, or raise the limit with "
        f"`tfdist run --max-local-roles N` or {MAX_ROLES_ENV}"
    )


def test_an_explicit_limit_replaces_the_cpu_rule() -> None:
    raised = LocalCapacity(cpus=2, open_files=1024, max_roles=12)
    assert capacity_problem(12, raised) is None
    assert (capacity_problem(13, raised) or "").startswith(
        "cluster: 13 roles are more than this machine runs locally (the limit set: at most 12)"
    )


def test_the_open_file_limit_binds_even_above_a_raised_role_limit() -> None:
    raised = LocalCapacity(cpus=2, open_files=1024, max_roles=200_000)
    assert capacity_problem(100_001, raised) == (
        "cluster: 100001 roles need about 400132 open files in the launcher and in every role, "
        "but the open-file limit here is 1024 (at most 224 roles); use fewer roles, run on "
        "Kubernetes, or raise the limit (`ulimit -n`)"
    )


def test_the_environment_sets_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_ROLES_ENV, "3")
    assert machine_capacity().max_roles == 3
    assert machine_capacity(5).max_roles == 5
    monkeypatch.setenv(MAX_ROLES_ENV, "many")
    with pytest.raises(ValueError, match=f"{MAX_ROLES_ENV}='many': write a number of roles"):
        machine_capacity()


def test_the_launcher_refuses_before_opening_a_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    spec = parse_spec(
        {
            "name": "big",
            "trainer": {"command": ["python", "train.py"]},
            "cluster": {"worker": 100_000},
            "train_spec": {"max_steps": 1},
            "model_dir": str(tmp_path / "model"),
        }
    )
    monkeypatch.setattr(socket, "socket", no_socket)
    with pytest.raises(LaunchRefused, match=r"^cluster: 100001 roles are more than"):
        LocalLauncher(tmp_path / "runs", max_roles=4).addresses(spec)
    assert list(tmp_path.iterdir()) == []
