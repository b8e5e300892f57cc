"""Per-run naming of the Airflow binding, and how the teardown judges a step.

(What a role's end means is `tfdist.supervisor`'s table: tests/unit/test_supervisor.py.)
"""

from __future__ import annotations

import pytest

from tfdist.backend import RoleState, RoleStatus
from tfdist.supervisor import Outcome
from tfdist_airflow.runs import (
    run_model_dir,
    run_name,
    run_scope,
    unfinished_step,
)


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        pytest.param(
            "manual__2026-11-28T00:18:36.710239+00:00",
            "manual__2026-11-28T00-18-36.710239-00-00",
            id="manual",
        ),
        pytest.param(
            "scheduled__2026-11-27T00:00:00+00:00",
            "scheduled__2026-11-27T00-00-00-00-00",
            id="scheduled",
        ),
        pytest.param("../../etc/passwd", "etc-passwd", id="no-escape"),
        pytest.param("a b/c", "a-b-c", id="spaces-and-slashes"),
    ],
)
def test_run_name_is_path_safe(run_id: str, expected: str) -> None:
    assert run_name(run_id) == expected


def test_run_name_refuses_an_id_with_nothing_usable() -> None:
    with pytest.raises(ValueError, match="no usable characters"):
        run_name("/../")


def test_model_dir_is_per_dag_and_run() -> None:
    assert run_model_dir("gs://b/models/", "nightly", "manual__x:1") == (
        "gs://b/models/nightly/manual__x-1"
    )
    assert run_model_dir("/m", "d", "r1") != run_model_dir("/m", "d", "r2")
    assert run_scope("d", "r:1", "group.sub") == "d/r-1/group.sub"


def status(name: str, state: RoleState, code: int | None = None, detail: str = "") -> RoleStatus:
    return RoleStatus(name=name, state=state, exit_code=code, detail=detail)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param(
            [status("chief-0", RoleState.SUCCEEDED, 0), status("ps-0", RoleState.SUCCEEDED, 0)],
            None,
            id="every-role-succeeded",
        ),
        pytest.param(
            [
                status("chief-0", RoleState.RUNNING),
                status("worker-0", RoleState.PENDING),
                status("evaluator-0", RoleState.FAILED, 143, "stopped"),
            ],
            "evaluator-0 (exit code 143, stopped) failed; chief-0, worker-0 still running, "
            "stopped now",
            id="run-marked-failed",
        ),
        pytest.param(
            [
                status("chief-0", RoleState.FAILED, 1, "exited"),
                status("ps-0", RoleState.FAILED, None, "the role's supervisor was killed"),
                status("evaluator-0", RoleState.SUCCEEDED, 0),
            ],
            "chief-0 (exit code 1), ps-0 (the role's supervisor was killed) failed",
            id="roles-failed",
        ),
    ],
)
def test_unfinished_step_names_each_role_that_did_not_succeed(
    statuses: list[RoleStatus], expected: str | None
) -> None:
    assert unfinished_step({s.name: s for s in statuses}) == expected


def test_the_supervisors_outcome_judges_the_step_when_it_decided_one() -> None:
    """A ps that crashed after the chief succeeded changed nothing: the outcome says so."""
    crashed = {"ps-0": status("ps-0", RoleState.FAILED, 137)}
    done = Outcome(succeeded=True, reason="the chief and every evaluator succeeded")
    assert unfinished_step(crashed, done) is None
    failed = Outcome(succeeded=False, reason="chief-0 failed with exit code 3", role="chief-0")
    assert unfinished_step(crashed, failed) == "chief-0 failed with exit code 3"
    assert unfinished_step(crashed) == "ps-0 (exit code 137) failed"
