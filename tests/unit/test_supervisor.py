"""The supervisor's table, by value: state and observed statuses in, new state and commands out.

Roles: a parameter-server job (chief, 2 workers, ps, evaluator) unless a case says all-reduce
(chief, 2 workers, evaluator). Budgets: 2 restarts per role, 1 per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import Ending
from tfdist.spec import RestartPolicy
from tfdist.supervisor import (
    RULES,
    Outcome,
    RestartJob,
    RestartRole,
    Step,
    StopRoles,
    Supervised,
    SupervisionState,
    resume,
    rules_table,
    supervise,
)

PS_ROLES = ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")
ALL_REDUCE_ROLES = ("chief-0", "worker-0", "worker-1", "evaluator-0")
POLICY = RestartPolicy(max_role_restarts=2, max_job_restarts=1)
PS = Supervised(roles=PS_ROLES, uses_parameter_servers=True, policy=POLICY)
ALL_REDUCE = Supervised(roles=ALL_REDUCE_ROLES, uses_parameter_servers=False, policy=POLICY)
JOBSET = PS.model_copy(update={"engine_runs_policy": True})
NOW = 1000.0


def ended(code: int, at: float = NOW - 1, ending: Ending | None = None) -> RoleStatus:
    state = RoleState.SUCCEEDED if code == 0 and ending is None else RoleState.FAILED
    return RoleStatus(name="x", state=state, exit_code=code, ending=ending, ended_at=at)


OK = ended(0)
KILLED = ended(137)
ERROR = ended(3)
PREEMPTED = ended(143, ending=Ending.PREEMPTED)
STOPPED = ended(143, ending=Ending.STOPPED)
NEVER = RoleStatus(name="x", state=RoleState.FAILED, ending=Ending.NOT_STARTED, detail="no node")


@dataclass(frozen=True)
class Case:
    id: str
    ends: dict[str, RoleStatus]  # the others are running
    rule: str
    commands: tuple[object, ...] = ()
    outcome: str | None = None  # "succeeded", or the start of the failure reason
    job: Supervised = PS
    state: SupervisionState = field(default_factory=SupervisionState)
    now: float = NOW
    expect: dict[str, object] = field(default_factory=dict)  # fields of the new state


def statuses(job: Supervised, ends: dict[str, RoleStatus]) -> dict[str, RoleStatus]:
    running = RoleStatus(name="x", state=RoleState.RUNNING)
    return {name: ends.get(name, running).model_copy(update={"name": name}) for name in job.roles}


SETTLED = SupervisionState(failure_seen_at=NOW - 5)
CHIEF_DONE_LONG_AGO = SupervisionState(chief_done_at=NOW - 60)

CASES = [
    Case("running", {}, "running"),
    # -- one role ended ----------------------------------------------------------------------
    Case(
        "ps-worker-killed-restarts-alone",
        {"worker-1": KILLED},
        "role_ended",
        (RestartRole(role="worker-1"),),
        expect={"role_restarts": {"worker-1": 1}, "epoch": 0},
    ),
    Case(
        "evaluator-killed-restarts-alone",
        {"evaluator-0": KILLED},
        "role_ended",
        (RestartRole(role="evaluator-0"),),
        state=SupervisionState(role_restarts={"evaluator-0": 1}),
        expect={"role_restarts": {"evaluator-0": 2}},
    ),
    Case(
        "preempted-worker-not-counted",
        {"worker-0": PREEMPTED},
        "role_ended",
        (RestartRole(role="worker-0"),),
        state=SupervisionState(role_restarts={"worker-0": 2}),
        expect={"role_restarts": {"worker-0": 2}},
    ),
    Case(
        "chief-killed-restarts-the-job",
        {"chief-0": KILLED},
        "role_ended",
        (RestartJob(),),
        expect={"epoch": 1, "job_restarts": 1},
    ),
    Case(
        "ps-oom-restarts-the-job",
        {"ps-0": ended(137, ending=Ending.OOM_KILLED)},
        "role_ended",
        (RestartJob(),),
        expect={"epoch": 1, "job_restarts": 1},
    ),
    Case(
        "chief-preempted-restarts-the-job-not-counted",
        {"chief-0": PREEMPTED},
        "role_ended",
        (RestartJob(),),
        state=SupervisionState(epoch=3, job_restarts=1),
        expect={"epoch": 4, "job_restarts": 1},
    ),
    Case(
        "all-reduce-worker-killed-restarts-the-job",
        {"worker-1": KILLED},
        "role_ended",
        (RestartJob(),),
        job=ALL_REDUCE,
        expect={"epoch": 1},
    ),
    Case(
        "a-job-restart-starts-a-fresh-epoch",
        {"chief-0": KILLED},
        "role_ended",
        (RestartJob(),),
        state=SupervisionState(
            role_restarts={"worker-0": 1}, chief_done_at=NOW - 9, failure_seen_at=NOW - 9
        ),
        expect={"role_restarts": {"worker-0": 1}, "chief_done_at": None, "failure_seen_at": None},
    ),
    # -- failures wait for the exit records of the crashes that caused them ---------------
    Case(
        "program-error-first-seen-settles",
        {"chief-0": ERROR},
        "settling",
        expect={"failure_seen_at": NOW, "outcome": None},
    ),
    Case(
        "program-error-still-settling",
        {"chief-0": ERROR},
        "settling",
        state=SupervisionState(failure_seen_at=NOW - 0.5),
        expect={"failure_seen_at": NOW - 0.5},
    ),
    Case(
        "program-error-settled-fails-and-stops-the-rest",
        {"chief-0": ERROR},
        "role_ended",
        (StopRoles(roles=("worker-0", "worker-1", "ps-0", "evaluator-0")),),
        outcome="chief-0 failed with exit code 3: a failure of the program itself",
        state=SETTLED,
    ),
    Case(
        # The ps's exit record landed after the chief's: the crash decides, at once.
        "a-crash-landing-while-settling-restarts-the-job",
        {"chief-0": ended(1, at=NOW - 0.2), "ps-0": ended(137, at=NOW - 0.3)},
        "role_ended",
        (RestartJob(),),
        state=SupervisionState(failure_seen_at=NOW - 0.5),
        expect={"epoch": 1, "failure_seen_at": None},
    ),
    Case(
        "never-started-fails",
        {"worker-0": NEVER},
        "role_ended",
        (StopRoles(roles=("chief-0", "worker-1", "ps-0", "evaluator-0")),),
        outcome="worker-0 never started: no node",
        state=SETTLED,
    ),
    Case(
        "a-chief-stopped-on-request-fails-the-job",
        {"chief-0": STOPPED},
        "role_ended",
        (StopRoles(roles=("worker-0", "worker-1", "ps-0", "evaluator-0")),),
        outcome="chief-0 was stopped on request (exit code 143); the others cannot go on",
        state=SETTLED,
    ),
    Case(
        "an-evaluator-stopped-on-request-is-left-stopped",
        {"evaluator-0": STOPPED},
        "running",
        state=SETTLED,
    ),
    Case(
        "a-job-with-a-role-left-stopped-fails-when-the-rest-ended",
        {"chief-0": OK, "worker-0": OK, "worker-1": STOPPED, "ps-0": OK, "evaluator-0": OK},
        "after_chief",
        outcome="worker-1 stopped on request: the job is not complete without it",
    ),
    # -- budgets -----------------------------------------------------------------------------
    Case(
        "role-budget-spent-fails",
        {"evaluator-0": KILLED},
        "role_ended",
        (StopRoles(roles=("chief-0", "worker-0", "worker-1", "ps-0")),),
        outcome="evaluator-0 ended: killed by SIGKILL (exit code 137); all 2 restarts used "
        "(restart_policy.max_role_restarts: 2)",
        state=SETTLED.model_copy(update={"role_restarts": {"evaluator-0": 2}}),
    ),
    Case(
        "role-budgets-are-per-role",
        {"worker-0": KILLED},
        "role_ended",
        (RestartRole(role="worker-0"),),
        state=SupervisionState(role_restarts={"worker-1": 2, "evaluator-0": 2}),
    ),
    Case(
        "job-budget-spent-fails",
        {"chief-0": KILLED},
        "role_ended",
        (StopRoles(roles=("worker-0", "worker-1", "ps-0", "evaluator-0")),),
        outcome="chief-0 ended: killed by SIGKILL (exit code 137); all 1 restarts used "
        "(restart_policy.max_job_restarts: 1)",
        state=SETTLED.model_copy(update={"job_restarts": 1}),
    ),
    # -- several ends at once ---------------------------------------------------------------
    Case(
        "the-crash-not-the-error-it-caused",
        {"chief-0": ended(1), "ps-0": ended(137)},
        "role_ended",
        (RestartJob(),),
    ),
    Case(
        "a-job-restart-before-a-role-restart",
        {"evaluator-0": KILLED, "ps-0": KILLED},
        "role_ended",
        (RestartJob(),),
    ),
    Case(
        "of-two-role-crashes-the-first-to-end",
        {"evaluator-0": ended(137, at=NOW - 1), "worker-1": ended(137, at=NOW - 2)},
        "role_ended",
        (RestartRole(role="worker-1"),),
    ),
    # -- after the chief ---------------------------------------------------------------------
    Case(
        "chief-done-waits-for-the-evaluator",
        {"chief-0": OK},
        "after_chief",
        expect={"chief_done_at": NOW},
    ),
    Case(
        # The evaluator is still on the final checkpoint; a lingering ps never hurries it.
        "an-evaluator-is-never-stopped-for-a-lingering-ps",
        {"chief-0": OK, "worker-0": OK, "worker-1": OK},
        "after_chief",
        state=CHIEF_DONE_LONG_AGO,
    ),
    Case(
        "evaluator-done-after-the-chief-succeeds",
        {"chief-0": OK, "evaluator-0": OK, "worker-0": OK, "worker-1": OK, "ps-0": OK},
        "all_succeeded",
        outcome="succeeded",
    ),
    Case(
        "servers-still-up-within-the-grace-wait",
        {"chief-0": OK, "evaluator-0": OK},
        "after_chief",
        state=SupervisionState(chief_done_at=NOW - 5),
    ),
    Case(
        "servers-still-up-after-the-grace-are-stopped",
        {"chief-0": OK, "evaluator-0": OK},
        "after_chief",
        (StopRoles(roles=("worker-0", "worker-1", "ps-0")),),
        outcome="succeeded",
        state=CHIEF_DONE_LONG_AGO,
    ),
    Case(
        "a-worker-crash-after-the-chief-succeeded-changes-nothing",
        {"chief-0": OK, "worker-1": KILLED, "ps-0": ERROR},
        "after_chief",
        state=CHIEF_DONE_LONG_AGO,
    ),
    Case(
        "an-evaluator-crash-after-the-chief-restarts-it",
        {"chief-0": OK, "evaluator-0": KILLED},
        "role_ended",
        (RestartRole(role="evaluator-0"),),
    ),
    # -- decided, and engines that run the policy ------------------------------------------
    Case(
        "decided-is-final",
        {"chief-0": KILLED},
        "decided",
        outcome="before",
        state=SupervisionState(outcome=Outcome(succeeded=False, reason="before", role="ps-0")),
    ),
    Case(
        "an-engine-failure-is-final-and-the-engine-stops-the-rest",
        {"evaluator-0": ended(137)},
        "engine_failed",
        outcome="evaluator-0 failed for good: killed by SIGKILL",
        job=JOBSET,
    ),
    Case(
        "an-engine-failure-names-the-role-whose-end-failed-the-job",
        {
            "chief-0": RoleStatus(name="x", state=RoleState.FAILED, detail="the job failed: ..."),
            "evaluator-0": ended(137),
        },
        "engine_failed",
        outcome="evaluator-0 failed for good",
        job=JOBSET,
        expect={"outcome.role": "evaluator-0"},
    ),
    Case(
        "an-engine-finishes-without-stopping-servers",
        {"chief-0": OK, "evaluator-0": OK},
        "after_chief",
        outcome="succeeded",
        job=JOBSET,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_supervisor_table(case: Case) -> None:
    step = supervise(case.job, case.state, statuses(case.job, case.ends), case.now)

    assert step.rule == case.rule
    assert step.commands == case.commands
    outcome = step.state.outcome
    if case.outcome is None:
        assert outcome is None
    elif case.outcome == "succeeded":
        assert outcome is not None and outcome.succeeded
    else:
        assert outcome is not None and not outcome.succeeded
        assert outcome.reason.startswith(case.outcome), outcome.reason
    for name, value in case.expect.items():
        found: object = step.state
        for part in name.split("."):
            found = getattr(found, part)
        assert found == value, name


def test_a_failure_names_the_role_that_decided_it() -> None:
    step = supervise(PS, SETTLED, statuses(PS, {"worker-0": ERROR}), NOW)
    assert step.state.outcome == Outcome(
        succeeded=False,
        reason="worker-0 failed with exit code 3: a failure of the program itself, which no "
        "restart fixes",
        role="worker-0",
    )
    assert step.say == step.state.outcome.reason


def test_a_step_without_a_role_status_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no status for evaluator-0, ps-0, worker-0, worker-1$"):
        supervise(PS, SupervisionState(), {"chief-0": OK}, NOW)


def test_every_rule_is_a_row_of_the_documented_table() -> None:
    table = rules_table()
    assert [line.split("|")[1].strip(" `") for line in table.splitlines()[2:]] == [
        rule.name for rule in RULES
    ]
    assert len({rule.name for rule in RULES}) == len(RULES)


def test_every_rule_but_the_last_is_exercised_by_a_case() -> None:
    assert {case.rule for case in CASES} == {rule.name for rule in RULES}


def test_a_runner_taking_over_restarts_every_role_not_counted_keeping_the_counts() -> None:
    kept = SupervisionState(
        epoch=2, job_restarts=1, role_restarts={"evaluator-0": 2}, failure_seen_at=NOW
    )
    step = resume(kept)
    assert step.commands == (RestartJob(),)
    assert step.state == SupervisionState(epoch=3, job_restarts=1, role_restarts={"evaluator-0": 2})
    decided = kept.model_copy(update={"outcome": Outcome(succeeded=True, reason="done")})
    assert resume(decided) == Step(state=decided, rule="decided")
