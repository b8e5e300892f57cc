"""How a job's outcome is decided: a role's status as the policy's input, and `tfdist run`'s
loop driving the supervisor, on the in-memory backend (which failure of several decides is
`test_supervisor.py`'s table)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tfdist.backend import RoleState, RoleStatus
from tfdist.launch.foreground import Outcome, run_in_foreground
from tfdist.lifecycle import Ending
from tfdist.spec import RestartPolicy, parse_spec
from tfdist.testing import FakeBackend, ScriptExhausted

PENDING, RUNNING = RoleState.PENDING, RoleState.RUNNING
SUCCEEDED, FAILED = RoleState.SUCCEEDED, RoleState.FAILED
POLICY = RestartPolicy(max_role_restarts=2, max_job_restarts=1)


def status(
    name: str, state: RoleState, exit_code: int | None = None, detail: str = ""
) -> RoleStatus:
    return RoleStatus(name=name, state=state, exit_code=exit_code, detail=detail)


@pytest.mark.parametrize(
    ("role", "ending"),
    [
        pytest.param(status("worker-0", FAILED, 137), Ending.CRASHED, id="killed"),
        pytest.param(status("worker-0", FAILED, 143), Ending.CRASHED, id="terminated"),
        pytest.param(status("worker-0", FAILED, 128), Ending.CRASHED, id="128"),
        pytest.param(status("worker-0", FAILED, None, "gone"), Ending.CRASHED, id="unknown"),
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


# -- `tfdist run`'s loop on the in-memory backend: each tick is what happens between two polls
Tick = Callable[[FakeBackend], None]


def ends(*moves: tuple[str, int]) -> Tick:
    def tick(fake: FakeBackend) -> None:
        for role, code in moves:
            fake.write_log(role, f"{role} exits {code}\n")
            fake.exit(role, code)

    return tick


def all_done(fake: FakeBackend) -> None:
    for role, status in fake.statuses(fake.latest).items():
        if not status.state.finished or status.state is FAILED:
            fake.exit(role, 0)


PS_JOB = {"worker": 2, "ps": 1, "evaluator": 1}
ALL_REDUCE = {"worker": 1, "evaluator": 1}


def run(
    cluster: dict[str, int], ticks: list[Tick], settle_secs: float = 0
) -> tuple[Outcome, FakeBackend, list[str]]:
    spec = parse_spec(
        {
            "name": "job",
            "trainer": {"command": ["train"]},
            "cluster": cluster,
            "train_spec": {"max_steps": 10},
            "model_dir": "/m",
        }
    )
    fake = FakeBackend()
    fake.ticks = list(ticks)
    lines: list[str] = []
    job = fake.plan(spec, "cli")
    outcome = run_in_foreground(
        job, fake, lines.append, policy=POLICY, settle_secs=settle_secs, clock=fake.clock
    )
    return outcome, fake, lines


def test_a_crashed_ps_worker_and_evaluator_restart_alone() -> None:
    outcome, fake, lines = run(
        PS_JOB, [ends(("worker-1", 137)), ends(("evaluator-0", 137)), all_done]
    )
    assert outcome.succeeded
    tries = {role: fake.tries(role) for role in ("chief-0", "worker-0", "worker-1", "ps-0")}
    assert tries == {"chief-0": 1, "worker-0": 1, "worker-1": 2, "ps-0": 1}
    assert fake.tries("evaluator-0") == 2
    assert (
        "tfdist: worker-1 ended: killed by SIGKILL (exit code 137); restarting worker-1 alone "
        "(restart 1 of 2)"
    ) in lines


def test_a_crashed_chief_restarts_every_role_within_the_job_budget() -> None:
    outcome, fake, lines = run(ALL_REDUCE, [ends(("chief-0", 137)), all_done])
    assert outcome.succeeded
    assert [fake.tries(role) for role in ("chief-0", "worker-0", "evaluator-0")] == [2, 2, 2]
    assert any(
        "restarting every role from the last checkpoint (restart 1 of 1)" in x for x in lines
    )


def test_the_crash_not_the_error_it_caused_decides() -> None:
    outcome, fake, _ = run(ALL_REDUCE, [ends(("chief-0", 1), ("worker-0", 137)), all_done])
    assert outcome.succeeded and fake.tries("chief-0") == 2


def test_a_crash_past_the_budget_fails_the_job() -> None:
    outcome, fake, _ = run(ALL_REDUCE, [ends(("worker-0", 137)), ends(("worker-0", 137))])
    assert not outcome.succeeded and outcome.failed_role == "worker-0"
    assert outcome.detail.endswith("all 1 restarts used (restart_policy.max_job_restarts: 1)")
    assert fake.tries("worker-0") == 2


def test_a_program_error_fails_at_once_with_the_roles_last_lines() -> None:
    def error(fake: FakeBackend) -> None:
        fake.write_log("chief-0", "step 10\nTraceback (most recent call last):\nValueError: x\n")
        fake.exit("chief-0", 3)

    outcome, fake, _ = run(PS_JOB, [error])
    assert outcome.failed_role == "chief-0"
    assert outcome.detail == (
        "chief-0 failed with exit code 3: a failure of the program itself, which no restart fixes"
    )
    assert outcome.last_lines == ("step 10", "Traceback (most recent call last):", "ValueError: x")
    assert all(fake.tries(role) == 1 for role in ("chief-0", "worker-0", "evaluator-0"))
    # every role still running was stopped
    assert {s.state for s in fake.statuses(fake.latest).values()} == {FAILED}


def test_after_the_chief_only_the_evaluator_matters() -> None:
    outcome, fake, _ = run(
        PS_JOB,
        [
            ends(("chief-0", 0), ("worker-0", 0), ("worker-1", 0)),
            ends(("ps-0", 137)),  # no longer needed: not restarted
            ends(("evaluator-0", 137)),  # the final checkpoint is not evaluated yet
            ends(("evaluator-0", 0)),
        ],
    )
    assert outcome.succeeded
    assert (fake.tries("ps-0"), fake.tries("evaluator-0")) == (1, 2)


def test_a_crash_whose_exit_record_lands_after_the_error_it_caused_restarts_the_job() -> None:
    """The chief lost its ps and exited 1; the ps's record lands one poll later, saying it
    ended first. The run waits for it (settling) and restarts the job instead of failing."""

    def ps_record_lands(fake: FakeBackend) -> None:
        fake.exit("ps-0", 137)
        launch = fake.launches[fake.latest.launch_id]
        launch.statuses["ps-0"] = launch.statuses["ps-0"].model_copy(update={"ended_at": 0.1})

    outcome, fake, lines = run(
        PS_JOB, [ends(("chief-0", 1)), ps_record_lands, all_done], settle_secs=1.0
    )
    assert outcome.succeeded, lines
    assert (fake.tries("chief-0"), fake.tries("ps-0")) == (2, 2)
    assert any("ps-0 ended: killed by SIGKILL" in line for line in lines), lines


def test_a_scripted_run_that_outlives_its_script_fails_at_once() -> None:
    with pytest.raises(ScriptExhausted, match="after the last scripted tick"):
        run(PS_JOB, [ends(("worker-0", 0))])
