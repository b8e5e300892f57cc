"""The supervisor of a running gang: one pure step, driven by every runner.

`supervise(job, state, statuses, now)` takes what is fixed for a launch (`Supervised`), the
launch's durable `SupervisionState` (restart counts, the job's restart epoch, the outcome once
decided), every role's observed status and the time, and returns a `Step`: the new state and
the `Command`s to carry out. `tfdist.supervision.drive` runs one step against a backend, under the
launch's exclusive supervision record; `tfdist run` and the Airflow watch triggers only call it.

What one role's end means (succeeded, restart this role, restart the job, fail now) is
`tfdist.lifecycle.decide`; the rules here say which end counts and when. They are `RULES`,
tried in order, the first that applies wins (`rules_table()` renders them; this table, the
README's and RELIABILITY.md's are checked against it):

| rule | when | then |
|---|---|---|
| `decided` | the job's outcome is already recorded | nothing more: every runner reports the recorded outcome |
| `engine_failed` | the engine runs the policy itself (JobSet) and reports a role failed | the job fails now: the engine has restarted it as far as the policy allows, and stops the other roles itself |
| `settling` | the end that decides (a crash before the program error it caused, a job restart before a role restart, the chief first, then the first to end) fails the job and was first seen less than `settle_secs` (1 s) ago | wait: the exit record of a crash that caused it may still land |
| `role_ended` | a role ended other than with exit 0 (after the chief succeeded, only an evaluator's end counts: training is complete, a ps or worker ending then changes nothing) | `lifecycle.decide` for the end that decides: restart it alone, restart every role (the epoch goes up by one), or fail now and stop the others |
| `all_succeeded` | every role succeeded | the job succeeded |
| `after_chief` | the chief succeeded | wait for every evaluator to end on its own (its last evaluation is the gate's input); then the job succeeded, stopping a ps or worker still serving `server_exit_grace_secs` after the chief (a JobSet's success policy stops them itself); it failed if a role was left stopped on request |
| `running` | otherwise | wait |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import Action, Ending, RoleEnd, RoleId, Scope, Verdict, decide, restart_scope
from tfdist.spec import Frozen, JobSpec, RestartPolicy, Role

__all__ = [
    "RULES",
    "Command",
    "Outcome",
    "RestartJob",
    "RestartRole",
    "Step",
    "StopRoles",
    "Supervised",
    "SupervisionState",
    "resume",
    "rules_table",
    "supervise",
]

SETTLE_SECS = 1.0  # a crash's exit record may land this long after the failure it caused
SERVER_EXIT_GRACE_SECS = 30.0  # a ps or worker still serving this long after the chief: stop it


class Supervised(Frozen):
    """What the supervisor knows of a launch, fixed for its life."""

    roles: tuple[str, ...]
    uses_parameter_servers: bool
    policy: RestartPolicy = Field(default_factory=RestartPolicy)
    # The engine runs the compiled policy itself (a JobSet): a role it reports failed has
    # failed for good, and the supervisor never restarts anything.
    engine_runs_policy: bool = False
    settle_secs: float = Field(default=SETTLE_SECS, ge=0)
    server_exit_grace_secs: float = Field(default=SERVER_EXIT_GRACE_SECS, ge=0)

    @classmethod
    def of(
        cls,
        spec: JobSpec,
        roles: tuple[str, ...],
        *,
        engine_runs_policy: bool = False,
        policy: RestartPolicy | None = None,
    ) -> Supervised:
        return cls(
            roles=roles,
            uses_parameter_servers=spec.cluster.uses_parameter_servers,
            policy=policy or spec.restart_policy,
            engine_runs_policy=engine_runs_policy,
        )


class Outcome(Frozen):
    """How the job ended. `role`: the role whose end decided a failure."""

    succeeded: bool
    reason: str
    role: str | None = None


class SupervisionState(Frozen):
    """What the supervisor remembers of a launch; kept with the launch, never only in memory.

    `epoch` counts every restart of the whole job (counted or not): a relaunch of the gang
    moves it from n to n + 1 while its runner holds the launch's record exclusively, so however
    many runners saw the crash, it happens once.
    """

    epoch: int = 0
    job_restarts: int = 0  # counted against `max_job_restarts`
    role_restarts: dict[str, int] = Field(default_factory=dict)  # counted, by role
    failure_seen_at: float | None = None  # a failure that fails the job, first seen (settling)
    chief_done_at: float | None = None  # the chief of this epoch was first seen succeeded
    outcome: Outcome | None = None


class RestartRole(Frozen):
    """Start one ended role again, alone."""

    kind: Literal["restart_role"] = "restart_role"
    role: str


class RestartJob(Frozen):
    """Stop every role, then start them all again: training resumes from the last checkpoint."""

    kind: Literal["restart_job"] = "restart_job"


class StopRoles(Frozen):
    """Stop these roles and wait until they are gone."""

    kind: Literal["stop_roles"] = "stop_roles"
    roles: tuple[str, ...]


Command = Annotated[RestartRole | RestartJob | StopRoles, Field(discriminator="kind")]


class Step(Frozen):
    """One step's result: the new state, what to do, and what to tell the user (or "")."""

    state: SupervisionState
    commands: tuple[Command, ...] = ()
    say: str = ""
    rule: str = ""


@dataclass(frozen=True)
class Seen:
    """One step's input, with the facts several rules share."""

    job: Supervised
    state: SupervisionState
    statuses: Mapping[str, RoleStatus]
    now: float

    @property
    def chief_succeeded(self) -> bool:
        chief = self.statuses.get("chief-0")
        return chief is not None and chief.state is RoleState.SUCCEEDED

    def unfinished(self, *kinds: Role) -> tuple[str, ...]:
        return tuple(
            name
            for name, status in self.statuses.items()
            if not status.state.finished and (not kinds or RoleId.parse(name).kind in kinds)
        )

    def failures(self) -> dict[str, RoleEnd]:
        """The ends other than success that still matter: once the chief succeeded training is
        complete, and only an evaluator's end does (`after_chief` below); a role a user
        stopped that the others can do without is left stopped (`left_stopped`)."""
        ends = {}
        for name, status in self.statuses.items():
            end = status.end
            if end is None or end.ending is Ending.SUCCEEDED or name in self.left_stopped:
                continue
            if self.chief_succeeded and RoleId.parse(name).kind is not Role.EVALUATOR:
                continue
            ends[name] = end
        return ends

    @cached_property  # once a step: `failures` asks for every role
    def left_stopped(self) -> list[str]:
        """The roles a user stopped that the others go on without (an evaluator, a
        parameter-server worker: `lifecycle.decide` leaves them stopped)."""
        return [
            name
            for name, status in self.statuses.items()
            if status.end is not None
            and self.verdict(RoleId.parse(name), status.end).action is Action.LEAVE_STOPPED
        ]

    def verdict(self, role: RoleId, end: RoleEnd) -> Verdict:
        return decide(
            role,
            end,
            uses_parameter_servers=self.job.uses_parameter_servers,
            policy=self.job.policy,
            role_restarts=self.state.role_restarts.get(role.name, 0),
            job_restarts=self.state.job_restarts,
        )

    def cause(self) -> tuple[RoleId, RoleEnd] | None:
        """The failure that decides when several roles ended: a crash before a program error
        (a chief that lost its ps exits 1 because of the crash), a crash that restarts the
        job before one that restarts a role alone, the chief before others, then the one
        whose exit record says it ended first."""
        failures = self.failures()
        if not failures:
            return None

        def rank(name: str) -> tuple[int, int, int, float]:
            role, end = RoleId.parse(name), failures[name]
            crash = end.ending in (Ending.CRASHED, Ending.OOM_KILLED, Ending.PREEMPTED)
            scope = restart_scope(role.kind, self.job.uses_parameter_servers)
            ended = self.statuses[name].ended_at
            return (
                0 if crash else 1,
                1 if scope is Scope.ROLE else 0,
                0 if role.kind is Role.CHIEF else 1,
                math.inf if ended is None else ended,
            )

        name = min(failures, key=rank)
        return RoleId.parse(name), failures[name]

    def update(self, **changes: object) -> SupervisionState:
        return self.state.model_copy(update=changes)


@dataclass(frozen=True)
class Rule:
    """One row of the supervisor's table: when it applies, what happens, and the code."""

    name: str
    when: str
    then: str
    apply: Callable[[Seen], Step | None]


def _decided(seen: Seen) -> Step | None:
    if seen.state.outcome is None:
        return None
    return Step(state=seen.state)


def _engine_failed(seen: Seen) -> Step | None:
    if not seen.job.engine_runs_policy:
        return None
    failed = [s for s in seen.statuses.values() if s.state is RoleState.FAILED]
    if not failed:
        return None
    # The role whose own end failed the job (it has an exit code) before those failed with it.
    status = min(failed, key=lambda s: s.exit_code is None and s.ending is None)
    end = status.end
    how = status.detail or (end.describe() if end else "failed")
    return _fail(seen, status.name, f"{status.name} failed for good: {how}", stop=False)


def _settling(seen: Seen) -> Step | None:
    found = seen.cause()
    if found is None or seen.job.engine_runs_policy:
        return None
    verdict = seen.verdict(*found)
    if verdict.action is not Action.FAIL_JOB:
        return None
    first = seen.now if seen.state.failure_seen_at is None else seen.state.failure_seen_at
    if seen.now - first >= seen.job.settle_secs:
        return None
    return Step(state=seen.update(failure_seen_at=first))


def _role_ended(seen: Seen) -> Step | None:
    found = seen.cause()
    if found is None or seen.job.engine_runs_policy:
        return None
    role, end = found
    verdict = seen.verdict(role, end)
    if verdict.action is Action.FAIL_JOB:
        return _fail(seen, role.name, verdict.reason)
    if verdict.action is Action.RESTART_ROLE:
        counts = dict(seen.state.role_restarts)
        counts[role.name] = counts.get(role.name, 0) + verdict.counted
        return Step(
            state=seen.update(role_restarts=counts, failure_seen_at=None),
            commands=(RestartRole(role=role.name),),
            say=verdict.reason,
        )
    state = SupervisionState(
        epoch=seen.state.epoch + 1,
        job_restarts=seen.state.job_restarts + verdict.counted,
        role_restarts=seen.state.role_restarts,
    )
    return Step(state=state, commands=(RestartJob(),), say=verdict.reason)


def _all_succeeded(seen: Seen) -> Step | None:
    if not all(status.state is RoleState.SUCCEEDED for status in seen.statuses.values()):
        return None
    return _finish(seen, "every role succeeded")


def _after_chief(seen: Seen) -> Step | None:
    if not seen.chief_succeeded:
        return None
    done_at = seen.state.chief_done_at if seen.state.chief_done_at is not None else seen.now
    state = seen.update(chief_done_at=done_at)
    if seen.unfinished(Role.EVALUATOR):  # its last evaluation is the one the gate reads
        return Step(state=state)
    stopped = seen.left_stopped
    lingering = seen.unfinished()
    if stopped and not lingering:
        why = f"{', '.join(stopped)} stopped on request: the job is not complete without it"
        return _fail(seen, stopped[0], why)
    if not lingering or seen.job.engine_runs_policy:  # a JobSet's success policy ends them
        return _finish(seen, "the chief and every evaluator succeeded")
    if seen.now - done_at < seen.job.server_exit_grace_secs:
        return Step(state=state)
    finished = _finish(seen, f"stopped {', '.join(lingering)}, still running after the chief")
    return finished.model_copy(
        update={
            "commands": (StopRoles(roles=lingering),),
            "say": f"{', '.join(lingering)} still running after the chief; stopping",
        }
    )


def _running(seen: Seen) -> Step | None:
    return Step(state=seen.state)


def _fail(seen: Seen, role: str, reason: str, *, stop: bool = True) -> Step:
    running = seen.unfinished() if stop else ()
    return Step(
        state=seen.update(outcome=Outcome(succeeded=False, reason=reason, role=role)),
        commands=(StopRoles(roles=running),) if running else (),
        say=reason,
    )


def _finish(seen: Seen, reason: str) -> Step:
    return Step(state=seen.update(outcome=Outcome(succeeded=True, reason=reason)))


RULES: tuple[Rule, ...] = (
    Rule(
        "decided",
        "the job's outcome is already recorded",
        "nothing more: every runner reports the recorded outcome",
        _decided,
    ),
    Rule(
        "engine_failed",
        "the engine runs the policy itself (JobSet) and reports a role failed",
        "the job fails now: the engine has restarted it as far as the policy allows, and "
        "stops the other roles itself",
        _engine_failed,
    ),
    Rule(
        "settling",
        "the end that decides (a crash before the program error it caused, a job restart "
        "before a role restart, the chief first, then the first to end) fails the job and was "
        "first seen less than `settle_secs` (1 s) ago",
        "wait: the exit record of a crash that caused it may still land",
        _settling,
    ),
    Rule(
        "role_ended",
        "a role ended other than with exit 0 (after the chief succeeded, only an evaluator's "
        "end counts: training is complete, a ps or worker ending then changes nothing)",
        "`lifecycle.decide` for the end that decides: restart it alone, restart every role "
        "(the epoch goes up by one), or fail now and stop the others",
        _role_ended,
    ),
    Rule(
        "all_succeeded",
        "every role succeeded",
        "the job succeeded",
        _all_succeeded,
    ),
    Rule(
        "after_chief",
        "the chief succeeded",
        "wait for every evaluator to end on its own (its last evaluation is the gate's "
        "input); then the job succeeded, stopping a ps or worker still serving "
        "`server_exit_grace_secs` after the chief (a JobSet's success policy stops them "
        "itself); it failed if a role was left stopped on request",
        _after_chief,
    ),
    Rule("running", "otherwise", "wait", _running),
)


def supervise(
    job: Supervised,
    state: SupervisionState,
    statuses: Mapping[str, RoleStatus],
    now: float,
) -> Step:
    """The first rule of `RULES` that applies to the roles as they are now."""
    missing = set(job.roles) - set(statuses)
    if missing:
        raise ValueError(f"no status for {', '.join(sorted(missing))}")
    seen = Seen(job=job, state=state, statuses=statuses, now=now)
    for rule in RULES:
        step = rule.apply(seen)
        if step is not None:
            return step.model_copy(update={"rule": rule.name})
    raise AssertionError("the last rule always applies")  # pragma: no cover


def resume(state: SupervisionState) -> Step:
    """A runner takes over a launch whose runner went away (`tfdist run --resume` after the
    previous one was killed): every role starts again from the last checkpoint, not counted
    (the runner went away, not a role), with the counts and outcome the launch recorded."""
    if state.outcome is not None:
        return Step(state=state, rule="decided")
    restarted = SupervisionState(
        epoch=state.epoch + 1,
        job_restarts=state.job_restarts,
        role_restarts=state.role_restarts,
    )
    return Step(
        state=restarted,
        commands=(RestartJob(),),
        say="resuming the launch: restarting every role from the last checkpoint (not counted)",
        rule="resume",
    )


def rules_table() -> str:
    """`RULES` as a Markdown table, for the docs."""
    rows = ["| rule | when | then |", "|---|---|---|"]
    rows += [f"| `{rule.name}` | {rule.when} | {rule.then} |" for rule in RULES]
    return "\n".join(rows)
