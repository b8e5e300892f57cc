"""When a job has succeeded or failed, and how a role's status maps to the policy's input."""

from __future__ import annotations

import pytest

from tfdist.backend import RoleState, RoleStatus
from tfdist.launch.foreground import Outcome, crashed_roles, job_outcome
from tfdist.lifecycle import Ending

PENDING, RUNNING = RoleState.PENDING, RoleState.RUNNING
SUCCEEDED, FAILED = RoleState.SUCCEEDED, RoleState.FAILED


def statuses(*roles: RoleStatus) -> dict[str, RoleStatus]:
    return {role.name: role for role in roles}


def status(
    name: str, state: RoleState, exit_code: int | None = None, detail: str = ""
) -> RoleStatus:
    return RoleStatus(name=name, state=state, exit_code=exit_code, detail=detail)


def test_every_role_succeeded() -> None:
    outcome = job_outcome(
        statuses(
            status("chief-0", SUCCEEDED, 0),
            status("worker-0", SUCCEEDED, 0),
            status("ps-0", SUCCEEDED, 0),
            status("evaluator-0", SUCCEEDED, 0),
        )
    )
    assert outcome == Outcome(succeeded=True)


@pytest.mark.parametrize("unfinished", [PENDING, RUNNING])
def test_undecided_while_a_role_has_not_finished(unfinished: RoleState) -> None:
    outcome = job_outcome(
        statuses(status("chief-0", SUCCEEDED, 0), status("evaluator-0", unfinished))
    )
    assert outcome is None


def test_undecided_while_every_role_runs() -> None:
    assert job_outcome(statuses(status("chief-0", RUNNING), status("worker-0", PENDING))) is None


def test_one_failure_decides_while_others_still_run() -> None:
    outcome = job_outcome(
        statuses(
            status("chief-0", RUNNING),
            status("worker-0", FAILED, 3, "exited"),
            status("evaluator-0", RUNNING),
        )
    )
    assert outcome == Outcome(succeeded=False, failed_role="worker-0", detail="exit code 3")


def test_the_chiefs_failure_is_reported_first() -> None:
    outcome = job_outcome(
        statuses(
            status("worker-0", FAILED, 143, "stopped"),
            status("worker-1", FAILED, 1, "exited"),
            status("chief-0", FAILED, 1, "exited"),
        )
    )
    assert outcome == Outcome(succeeded=False, failed_role="chief-0", detail="exit code 1")


def test_the_first_failed_role_when_the_chief_did_not_fail() -> None:
    outcome = job_outcome(
        statuses(
            status("chief-0", SUCCEEDED, 0),
            status("worker-1", FAILED, 2),
            status("evaluator-0", FAILED, 1),
        )
    )
    assert outcome is not None and outcome.failed_role == "worker-1"


def test_a_failure_without_exit_code_shows_its_detail() -> None:
    outcome = job_outcome(
        statuses(
            status("chief-0", RUNNING),
            status("ps-0", FAILED, None, "the role's supervisor was killed"),
        )
    )
    assert outcome == Outcome(
        succeeded=False, failed_role="ps-0", detail="the role's supervisor was killed"
    )


@pytest.mark.parametrize(
    ("role", "ending"),
    [
        pytest.param(status("worker-0", FAILED, 137), Ending.CRASHED, id="killed"),
        pytest.param(status("worker-0", FAILED, 143), Ending.CRASHED, id="terminated"),
        pytest.param(status("worker-0", FAILED, 128), Ending.CRASHED, id="128"),
        pytest.param(
            status("worker-0", FAILED, None, "supervisor killed"), Ending.CRASHED, id="unknown"
        ),
        pytest.param(status("worker-0", FAILED, 0, "stopped"), Ending.CRASHED, id="failed-with-0"),
        pytest.param(status("worker-0", FAILED, 1), Ending.PROGRAM_ERROR, id="error"),
        pytest.param(status("worker-0", FAILED, 2), Ending.PROGRAM_ERROR, id="usage"),
        pytest.param(status("worker-0", FAILED, 127), Ending.PROGRAM_ERROR, id="not-found"),
        pytest.param(
            RoleStatus(name="worker-0", state=FAILED, exit_code=137, ending=Ending.OOM_KILLED),
            Ending.OOM_KILLED,
            id="oom",
        ),
        pytest.param(status("worker-0", SUCCEEDED, 0), Ending.SUCCEEDED, id="succeeded"),
        pytest.param(status("worker-0", RUNNING), None, id="running"),
        pytest.param(status("worker-0", PENDING), None, id="pending"),
    ],
)
def test_a_status_says_how_the_role_ended(role: RoleStatus, ending: Ending | None) -> None:
    assert (role.end.ending if role.end is not None else None) is ending


def test_finished_states() -> None:
    assert [state for state in RoleState if state.finished] == [SUCCEEDED, FAILED]


def test_crashed_roles_are_those_killed_by_a_signal() -> None:
    crashed = crashed_roles(
        statuses(
            status("chief-0", FAILED, 1, "exited"),  # failed because its peer vanished
            status("worker-0", FAILED, 137, "exited"),
            status("ps-0", FAILED, None, "the role's supervisor was killed"),
            status("evaluator-0", RUNNING),
            status("worker-1", FAILED, 2, "exited"),
        )
    )
    assert crashed == ["worker-0 (exit code 137)", "ps-0 (the role's supervisor was killed)"]


def test_no_crash_when_roles_failed_on_their_own() -> None:
    assert (
        crashed_roles(statuses(status("chief-0", FAILED, 1), status("worker-0", SUCCEEDED, 0)))
        == []
    )
