"""Per-run naming of the Airflow binding, and the restart policy as a watch applies it.

(Which restart a role gets is `tfdist.lifecycle`'s table: tests/unit/test_lifecycle.py.)
"""

from __future__ import annotations

import pytest

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import Action
from tfdist.spec import RestartPolicy
from tfdist_airflow.runs import (
    NO_JOB_RESTART,
    WatchPolicy,
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


PS = WatchPolicy(uses_parameter_servers=True, restart_policy=RestartPolicy())
ALL_REDUCE = WatchPolicy(uses_parameter_servers=False, restart_policy=RestartPolicy())
ROLES = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]


def statuses(ended: dict[str, int] | None = None) -> dict[str, RoleStatus]:
    """Every role running, but those in `ended`, which ended with that exit code."""
    ended = ended or {}

    def state(role: str) -> RoleState:
        if role not in ended:
            return RoleState.RUNNING
        return RoleState.SUCCEEDED if ended[role] == 0 else RoleState.FAILED

    return {
        role: RoleStatus(name=role, state=state(role), exit_code=ended.get(role)) for role in ROLES
    }


@pytest.mark.parametrize(
    ("policy", "role", "ended", "cause"),
    [
        (PS, "evaluator-0", {}, None),
        (PS, "evaluator-0", {"chief-0": 0}, None),  # the chief is done: the evaluator goes on
        (PS, "evaluator-0", {"chief-0": 3}, "chief-0 failed with exit code 3"),
        (PS, "ps-0", {"chief-0": 137}, "chief-0 ended: killed by SIGKILL"),
        (PS, "chief-0", {"worker-1": 137}, None),  # restarted alone by its own watch
        (PS, "chief-0", {"evaluator-0": 137}, None),
        (PS, "chief-0", {"evaluator-0": 1}, "evaluator-0 failed with exit code 1"),
        (PS, "chief-0", {"ps-0": 137}, "ps-0 ended: killed by SIGKILL"),
        (ALL_REDUCE, "chief-0", {"worker-1": 137}, "worker-1 ended: killed by SIGKILL"),
        (PS, "chief-0", {"chief-0": 3}, None),  # its own end is not a peer's
    ],
)
def test_which_peers_end_a_role(
    policy: WatchPolicy, role: str, ended: dict[str, int], cause: str | None
) -> None:
    found = policy.ended_by_peer(role, statuses(ended))
    assert (found or "").startswith(cause or "") and (found is None) == (cause is None)


def test_a_watch_restarts_its_own_role_but_never_the_whole_job() -> None:
    status = statuses({"worker-1": 137})["worker-1"]
    assert PS.own_verdict("worker-1", status, role_restarts=0).action is Action.RESTART_ROLE
    spent = PS.own_verdict("worker-1", status, role_restarts=3)
    assert spent.action is Action.FAIL_JOB
    job = ALL_REDUCE.own_verdict("worker-1", status, role_restarts=0)
    assert job.action is Action.RESTART_JOB
    assert job.reason == f"worker-1 ended: killed by SIGKILL (exit code 137); {NO_JOB_RESTART}"
    assert PS.own_verdict("chief-0", statuses()["chief-0"], 0) is None


def test_a_backend_that_applies_the_policy_reports_failures_that_are_final() -> None:
    ended = statuses({"worker-1": 137})
    final = PS.own_verdict("worker-1", ended["worker-1"], role_restarts=0, final=True)
    assert final is not None and final.action is Action.FAIL_JOB
    assert final.reason.startswith("worker-1 failed for good: ")
    assert PS.ended_by_peer("chief-0", ended, final=True) == final.reason
