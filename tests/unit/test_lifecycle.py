"""The role-lifecycle policy, row by row: how a role ended -> what happens to the job."""

from __future__ import annotations

import pytest

from tfdist.lifecycle import (
    Action,
    Ending,
    RestartPolicy,
    RoleEnd,
    RoleId,
    Scope,
    decide,
    restart_scope,
)
from tfdist.spec import Role

POLICY = RestartPolicy(max_role_restarts=2, max_job_restarts=1)

OK = RoleEnd.from_exit(0)
ERROR = RoleEnd.from_exit(3)
KILLED = RoleEnd.from_exit(137)
OOM = RoleEnd.from_exit(137, oom_killed=True)
PREEMPTED = RoleEnd.from_exit(143, preempted=True, detail="DisruptionTarget")
VANISHED = RoleEnd.from_exit(None, detail="its pod is gone")
NOT_STARTED = RoleEnd(ending=Ending.NOT_STARTED, detail="not scheduled within 900 s")


@pytest.mark.parametrize(
    ("code", "oom", "preempted", "ending"),
    [
        pytest.param(0, False, False, Ending.SUCCEEDED, id="0"),
        pytest.param(1, False, False, Ending.PROGRAM_ERROR, id="1"),
        pytest.param(127, False, False, Ending.PROGRAM_ERROR, id="127"),
        pytest.param(128, False, False, Ending.CRASHED, id="128"),
        pytest.param(137, False, False, Ending.CRASHED, id="137"),
        pytest.param(255, False, False, Ending.CRASHED, id="255"),
        pytest.param(-9, False, False, Ending.CRASHED, id="negative"),
        pytest.param(None, False, False, Ending.CRASHED, id="no-exit-code"),
        pytest.param(137, True, False, Ending.OOM_KILLED, id="oom"),
        pytest.param(1, True, False, Ending.OOM_KILLED, id="oom-any-code"),
        pytest.param(137, False, True, Ending.PREEMPTED, id="preempted"),
        pytest.param(3, True, True, Ending.PREEMPTED, id="preempted-wins"),
    ],
)
def test_exits_are_classified(code: int | None, oom: bool, preempted: bool, ending: Ending) -> None:
    assert RoleEnd.from_exit(code, oom_killed=oom, preempted=preempted).ending is ending


@pytest.mark.parametrize(
    ("end", "text"),
    [
        (ERROR, "exit code 3"),
        (KILLED, "killed by SIGKILL (exit code 137)"),
        (RoleEnd.from_exit(143), "killed by SIGTERM (exit code 143)"),
        (RoleEnd.from_exit(128 + 100), "killed by signal 100 (exit code 228)"),
        (OOM, "out of memory (OOM-killed, exit code 137)"),
        (RoleEnd.from_exit(None, oom_killed=True), "out of memory (OOM-killed)"),
        (PREEMPTED, "preempted: DisruptionTarget"),
        (VANISHED, "ended without an exit code: its pod is gone"),
        (NOT_STARTED, "never started: not scheduled within 900 s"),
    ],
)
def test_an_end_is_described_in_a_users_words(end: RoleEnd, text: str) -> None:
    assert end.describe() == text


@pytest.mark.parametrize(
    ("kind", "uses_ps", "scope"),
    [
        (Role.EVALUATOR, False, Scope.ROLE),
        (Role.EVALUATOR, True, Scope.ROLE),
        (Role.WORKER, True, Scope.ROLE),
        (Role.WORKER, False, Scope.JOB),
        (Role.CHIEF, True, Scope.JOB),
        (Role.CHIEF, False, Scope.JOB),
        (Role.PS, True, Scope.JOB),
    ],
)
def test_restart_scope(kind: Role, uses_ps: bool, scope: Scope) -> None:
    assert restart_scope(kind, uses_ps) is scope


# (role, parameter servers?, end, role restarts used, job restarts used) -> action, counted
TABLE = [
    # exit 0: always succeeded
    ("chief-0", False, OK, 0, 0, Action.SUCCEEDED, False),
    ("evaluator-0", True, OK, 5, 5, Action.SUCCEEDED, False),
    # the program's own failure: never retried, whatever the budget
    ("chief-0", True, ERROR, 0, 0, Action.FAIL_JOB, False),
    ("worker-1", True, ERROR, 0, 0, Action.FAIL_JOB, False),
    ("evaluator-0", False, ERROR, 0, 0, Action.FAIL_JOB, False),
    ("ps-0", True, ERROR, 0, 0, Action.FAIL_JOB, False),
    # never started (not scheduled in time, no image): a restart would wait the same way
    ("evaluator-0", True, NOT_STARTED, 0, 0, Action.FAIL_JOB, False),
    ("chief-0", False, NOT_STARTED, 0, 0, Action.FAIL_JOB, False),
    # crashes: the role alone where it can, else the job, while the budget lasts
    ("evaluator-0", False, KILLED, 0, 0, Action.RESTART_ROLE, True),
    ("evaluator-0", False, KILLED, 1, 0, Action.RESTART_ROLE, True),
    ("evaluator-0", False, KILLED, 2, 0, Action.FAIL_JOB, False),
    ("worker-1", True, KILLED, 0, 1, Action.RESTART_ROLE, True),
    ("worker-1", True, KILLED, 2, 0, Action.FAIL_JOB, False),
    ("worker-1", False, KILLED, 0, 0, Action.RESTART_JOB, True),
    ("worker-1", False, KILLED, 0, 1, Action.FAIL_JOB, False),
    ("chief-0", True, KILLED, 0, 0, Action.RESTART_JOB, True),
    ("chief-0", True, KILLED, 5, 0, Action.RESTART_JOB, True),
    ("chief-0", True, KILLED, 0, 1, Action.FAIL_JOB, False),
    ("ps-0", True, KILLED, 0, 0, Action.RESTART_JOB, True),
    ("ps-0", True, VANISHED, 0, 0, Action.RESTART_JOB, True),
    # out of memory: a crash, counted
    ("chief-0", False, OOM, 0, 0, Action.RESTART_JOB, True),
    ("chief-0", False, OOM, 0, 1, Action.FAIL_JOB, False),
    ("evaluator-0", True, OOM, 0, 0, Action.RESTART_ROLE, True),
    # preemption: restarted, never counted, even with the budget spent
    ("worker-0", True, PREEMPTED, 2, 1, Action.RESTART_ROLE, False),
    ("worker-0", False, PREEMPTED, 2, 1, Action.RESTART_JOB, False),
    ("chief-0", True, PREEMPTED, 0, 1, Action.RESTART_JOB, False),
    ("evaluator-0", True, PREEMPTED, 2, 1, Action.RESTART_ROLE, False),
]


@pytest.mark.parametrize(
    ("role", "uses_ps", "end", "role_restarts", "job_restarts", "action", "counted"),
    [
        pytest.param(
            *row, id=f"{row[0]}-{'ps' if row[1] else 'ar'}-{row[2].ending}-{row[3]}-{row[4]}"
        )
        for row in TABLE
    ],
)
def test_policy_table(
    role: str,
    uses_ps: bool,
    end: RoleEnd,
    role_restarts: int,
    job_restarts: int,
    action: Action,
    counted: bool,
) -> None:
    verdict = decide(
        RoleId.parse(role),
        end,
        uses_parameter_servers=uses_ps,
        policy=POLICY,
        role_restarts=role_restarts,
        job_restarts=job_restarts,
    )
    assert (verdict.action, verdict.counted) == (action, counted)
    assert verdict.reason.startswith(role)


def test_reasons_read_as_a_user_wants() -> None:
    chief = RoleId(kind=Role.CHIEF, index=0)
    worker = RoleId.parse("worker-1")

    def reason(role: RoleId, end: RoleEnd, uses_ps: bool = True, used: int = 0) -> str:
        return decide(
            role, end, uses_parameter_servers=uses_ps, policy=POLICY, job_restarts=used
        ).reason

    assert reason(chief, ERROR) == (
        "chief-0 failed with exit code 3: a failure of the program itself, which no restart fixes"
    )
    assert reason(chief, OOM) == (
        "chief-0 ran out of memory (OOM-killed, exit code 137); restarting every role from the "
        "last checkpoint (restart 1 of 1)"
    )
    assert reason(worker, KILLED) == (
        "worker-1 ended: killed by SIGKILL (exit code 137); restarting worker-1 alone "
        "(restart 1 of 2)"
    )
    assert reason(chief, KILLED, used=1) == (
        "chief-0 ended: killed by SIGKILL (exit code 137); all 1 restarts used "
        "(restart_policy.max_job_restarts: 1)"
    )
    assert reason(worker, PREEMPTED, uses_ps=False) == (
        "worker-1 was preempted: DisruptionTarget; restarting every role (not counted)"
    )
    none_allowed = decide(
        chief,
        KILLED,
        uses_parameter_servers=False,
        policy=RestartPolicy(max_job_restarts=0),
    )
    assert none_allowed.reason.endswith("no restart allowed (restart_policy.max_job_restarts: 0)")


@pytest.mark.parametrize("name", ["chief", "chief-x", "master-0", "worker--1", "", "-0"])
def test_role_id_refuses_what_is_no_role_name(name: str) -> None:
    with pytest.raises(ValueError, match="is not a role name"):
        RoleId.parse(name)


def test_role_id_round_trips() -> None:
    for name in ("chief-0", "worker-11", "ps-2", "evaluator-0"):
        assert RoleId.parse(name).name == name == str(RoleId.parse(name))
    assert RoleId.parse("worker-3") == RoleId(kind=Role.WORKER, index=3)


def test_restart_policy_defaults_allow_restarts_and_refuse_negatives() -> None:
    default = RestartPolicy()
    assert default.max_role_restarts > 0
    assert default.max_job_restarts > 0
    with pytest.raises(ValueError, match="max_job_restarts"):
        RestartPolicy(max_job_restarts=-1)


def test_an_exit_keeps_its_code_and_detail_and_is_no_oom_or_preemption_by_default() -> None:
    """Built here, not at import: what `from_exit` returns when the test runs."""
    assert RoleEnd.from_exit(137) == RoleEnd(ending=Ending.CRASHED, exit_code=137, detail="")
    assert RoleEnd.from_exit(3, detail="x") == RoleEnd(
        ending=Ending.PROGRAM_ERROR, exit_code=3, detail="x"
    )
    assert RoleEnd.from_exit(128).describe() == "exit code 128"
    assert RoleEnd.from_exit(129).describe() == "killed by SIGHUP (exit code 129)"


def test_restart_budgets_start_unused_and_name_their_field_when_spent() -> None:
    chief, worker = RoleId.parse("chief-0"), RoleId.parse("worker-1")
    killed = RoleEnd.from_exit(137)
    first = decide(chief, killed, uses_parameter_servers=False, policy=POLICY)
    assert (first.action, first.counted) == (Action.RESTART_JOB, True)
    spent = decide(worker, killed, uses_parameter_servers=True, policy=POLICY, role_restarts=2)
    assert (spent.action, spent.reason) == (
        Action.FAIL_JOB,
        "worker-1 ended: killed by SIGKILL (exit code 137); all 2 restarts used "
        "(restart_policy.max_role_restarts: 2)",
    )


def test_a_role_that_vanished_reads_as_ended_without_an_exit_code() -> None:
    vanished = RoleEnd.from_exit(None, detail="its pod is gone")
    verdict = decide(RoleId.parse("chief-0"), vanished, uses_parameter_servers=False, policy=POLICY)
    assert verdict.reason == (
        "chief-0 ended without an exit code: its pod is gone; restarting every role from the "
        "last checkpoint (restart 1 of 1)"
    )


@pytest.mark.parametrize(
    ("exit_code", "reason", "ending", "detail"),
    [
        (0, "exited", Ending.SUCCEEDED, ""),
        (3, "exited", Ending.PROGRAM_ERROR, ""),
        (75, "exited", Ending.PREEMPTED, "ended after a preemption notice (SIGTERM)"),
        (75, "stopped", Ending.STOPPED, "stopped"),  # the runner's own SIGTERM: a stop
        (143, "stopped", Ending.STOPPED, "stopped"),
        (137, "killed", Ending.CRASHED, "killed"),
        (143, "launcher gone", Ending.CRASHED, "launcher gone"),
    ],
)
def test_an_exit_record_read(exit_code: int, reason: str, ending: Ending, detail: str) -> None:
    assert RoleEnd.from_record(exit_code, reason) == RoleEnd(
        ending=ending, exit_code=exit_code, detail=detail
    )
