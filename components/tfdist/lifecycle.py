"""What a role's end means for its job: one policy that every runner applies.

A backend reports how one run of a role ended (`RoleEnd`); `decide` says what happens next
(`Verdict`): the role *succeeded*, *restart this role alone*, *restart the whole job* from the
last checkpoint, or *fail the job now*, with the reason a user reads. `tfdist run`, the Airflow
watch tasks and the JobSet failure policy compiled for Kubernetes all follow this one table:

| how the role ended | evaluator, parameter-server worker | chief, ps, all-reduce worker | on a JobSet |
|---|---|---|---|
| exit 0 | succeeded | succeeded | the Job succeeded |
| exit 1-127 (the program's own failure) | the job fails now | the job fails now | `podFailurePolicy` FailJob on exit codes 1-127 |
| killed by a signal (exit >= 128) | restarted alone | every role restarted from the last checkpoint | any other end: counted (`backoffLimit`, `maxRestarts`) |
| out of memory (OOM-killed) | restarted alone | every role restarted from the last checkpoint | exit 137, as a SIGKILL: counted |
| preempted, evicted, node shut down | restarted alone, not counted | every role restarted from the last checkpoint, not counted | `DisruptionTarget` condition: not counted |
| never started (not scheduled, no image) | the job fails now | the job fails now | not failed by the JobSet (bound the wait with Kueue's `waitForPodsReady`) |
| stopped on request (its task killed, its run marked failed) | left stopped; the others go on, the job then fails | the job fails now | a deleted pod: as a signal |

A counted restart past its budget (`RestartPolicy.max_role_restarts` per role,
`max_job_restarts` per job) fails the job instead. Preemptions never count: they are the
cluster's doing, not the job's. The last column is how a JobSet's compiled policy tells the
end (`tfdist.kubernetes.jobset_policy`); Kubernetes cannot tell an OOM kill from a SIGKILL
(both exit 137), nor a stop on request from a crash. `policy_table()` renders this table from
`decide` itself; the README and RELIABILITY.md carry the same table, checked by a test.
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import Self

from pydantic import Field

from tfdist.spec import Frozen, RestartPolicy, Role

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "Action",
    "Ending",
    "RestartPolicy",
    "RoleEnd",
    "RoleId",
    "Scope",
    "Verdict",
    "decide",
    "restart_scope",
]


# How tfdist's runtime ends a role after a preemption notice (SIGTERM) once its work is safe:
# EX_TEMPFAIL, "try again later". A backend that sees it reads the end as preempted.
PREEMPTED_EXIT_CODE = 75


class RoleId(Frozen):
    """One replica of a role, named `<kind>-<index>` (`chief-0`, `worker-1`) everywhere."""

    kind: Role
    index: int = Field(ge=0)

    @classmethod
    def parse(cls, name: str) -> Self:
        kind, sep, index = name.rpartition("-")
        if not sep or not index.isdigit() or kind not in Role.__members__.values():
            raise ValueError(f"{name!r} is not a role name such as chief-0 or worker-1")
        return cls(kind=Role(kind), index=int(index))

    @property
    def name(self) -> str:
        return f"{self.kind.value}-{self.index}"

    def __str__(self) -> str:
        return self.name


class Ending(StrEnum):
    """How one run of a role ended, as far as the restart policy cares."""

    SUCCEEDED = "succeeded"  # exit code 0
    PROGRAM_ERROR = "program_error"  # exit code 1-127: the program failed on its own
    CRASHED = "crashed"  # killed by a signal (exit code >= 128), or vanished
    OOM_KILLED = "oom_killed"  # killed for using more memory than it may
    PREEMPTED = "preempted"  # preempted or evicted, its node shut down (DisruptionTarget)
    NOT_STARTED = "not_started"  # never ran: not scheduled in time, its image cannot be pulled
    STOPPED = "stopped"  # stopped on request: its watch task killed, its run marked failed


class RoleEnd(Frozen):
    """How a role ended: the policy's input. `detail` is the backend's own words, if any."""

    ending: Ending
    exit_code: int | None = None
    detail: str = ""

    @classmethod
    def from_exit(
        cls,
        exit_code: int | None,
        *,
        oom_killed: bool = False,
        preempted: bool = False,
        detail: str = "",
    ) -> Self:
        """Classify an exit. No exit code (a vanished process or pod) counts as a crash."""
        if preempted:
            ending = Ending.PREEMPTED
        elif oom_killed:
            ending = Ending.OOM_KILLED
        elif exit_code == 0:
            ending = Ending.SUCCEEDED
        elif exit_code is not None and 0 < exit_code < 128:
            ending = Ending.PROGRAM_ERROR
        else:
            ending = Ending.CRASHED
        return cls(ending=ending, exit_code=exit_code, detail=detail)

    @classmethod
    def from_record(cls, exit_code: int, reason: str = "exited") -> Self:
        """How a role ended, as its supervisor recorded it (a local exit record): `reason`
        "exited" (the program's own exit; `PREEMPTED_EXIT_CODE` after a preemption notice),
        "stopped" (on request), or what else ended it ("killed", "launcher gone")."""
        why = "" if reason == "exited" else reason
        if exit_code != 0 and why == "stopped":
            return cls(ending=Ending.STOPPED, exit_code=exit_code, detail=why)
        if exit_code == PREEMPTED_EXIT_CODE and not why:
            notice = "ended after a preemption notice (SIGTERM)"
            return cls(ending=Ending.PREEMPTED, exit_code=exit_code, detail=notice)
        return cls.from_exit(exit_code, detail=why)

    def describe(self) -> str:
        """In a user's words: `exit code 3`, `killed by SIGKILL (exit code 137)`, ..."""
        code = f"exit code {self.exit_code}" if self.exit_code is not None else ""
        extra = f": {self.detail}" if self.detail else ""
        match self.ending:
            case Ending.OOM_KILLED:
                return f"out of memory (OOM-killed{', ' + code if code else ''}){extra}"
            case Ending.PREEMPTED:
                return f"preempted{extra}"
            case Ending.NOT_STARTED:
                return f"never started{extra}"
            case Ending.STOPPED:
                return f"stopped on request ({code or 'no exit code'})"
            case Ending.CRASHED if self.exit_code is not None and self.exit_code > 128:
                return f"killed by {_signal_name(self.exit_code - 128)} ({code}){extra}"
        return f"{code or 'ended without an exit code'}{extra}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Scope(StrEnum):
    """What can be restarted after a role crashed."""

    ROLE = "role"  # this role alone; the others keep going
    JOB = "job"  # every role, from the last checkpoint


def restart_scope(kind: Role, uses_parameter_servers: bool) -> Scope:
    """The evaluator is stateless between checkpoints, and a worker under parameter-server
    training is a stateless executor the coordinator reconnects to; either can restart alone.
    A chief, a ps, or a member of an all-reduce ring holds state or collectives the others
    need: only a restart of the whole job from the last checkpoint brings it back."""
    if kind is Role.EVALUATOR or (kind is Role.WORKER and uses_parameter_servers):
        return Scope.ROLE
    return Scope.JOB


class Action(StrEnum):
    SUCCEEDED = "succeeded"
    RESTART_ROLE = "restart_role"
    RESTART_JOB = "restart_job"
    FAIL_JOB = "fail_job"
    LEAVE_STOPPED = "leave_stopped"  # the others go on; the job cannot succeed without it


class Verdict(Frozen):
    """What happens after a role ended, and why. `counted`: the restart uses up budget."""

    action: Action
    reason: str
    counted: bool = False


def decide(
    role: RoleId,
    end: RoleEnd,
    *,
    uses_parameter_servers: bool,
    policy: RestartPolicy,
    role_restarts: int = 0,
    job_restarts: int = 0,
) -> Verdict:
    """What happens after `role` ended as `end`, given the counted restarts used so far
    (`role_restarts` of this role, `job_restarts` of the job)."""
    how = end.describe()
    if end.ending is Ending.SUCCEEDED:
        return Verdict(action=Action.SUCCEEDED, reason=f"{role} succeeded")
    if end.ending is Ending.PROGRAM_ERROR:
        return Verdict(
            action=Action.FAIL_JOB,
            reason=f"{role} failed with {how}: a failure of the program itself, which no "
            "restart fixes",
        )
    if end.ending is Ending.NOT_STARTED:
        return Verdict(
            action=Action.FAIL_JOB,
            reason=f"{role} {how}; a restart would wait the same way",
        )
    scope = restart_scope(role.kind, uses_parameter_servers)
    if end.ending is Ending.STOPPED:  # a user's stop is not undone by a restart
        if scope is Scope.ROLE:
            return Verdict(
                action=Action.LEAVE_STOPPED,
                reason=f"{role} was {how}; the other roles go on without it",
            )
        return Verdict(
            action=Action.FAIL_JOB, reason=f"{role} was {how}; the others cannot go on without it"
        )
    action = Action.RESTART_ROLE if scope is Scope.ROLE else Action.RESTART_JOB
    what = f"restarting {role} alone" if scope is Scope.ROLE else "restarting every role"
    if end.ending is Ending.PREEMPTED:
        return Verdict(action=action, reason=f"{role} was {how}; {what} (not counted)")
    used, budget, field = (
        (role_restarts, policy.max_role_restarts, "max_role_restarts")
        if scope is Scope.ROLE
        else (job_restarts, policy.max_job_restarts, "max_job_restarts")
    )
    if used >= budget:
        spent = "no restart allowed" if budget == 0 else f"all {budget} restarts used"
        return Verdict(
            action=Action.FAIL_JOB,
            reason=f"{_ended(role, end)}; {spent} (restart_policy.{field}: {budget})",
        )
    from_checkpoint = "" if scope is Scope.ROLE else " from the last checkpoint"
    return Verdict(
        action=action,
        reason=f"{_ended(role, end)}; {what}{from_checkpoint} (restart {used + 1} of {budget})",
        counted=True,
    )


def _ended(role: RoleId, end: RoleEnd) -> str:
    """`worker-1 ended: killed by SIGKILL (exit code 137)`, `chief-0 ran out of memory (...)`."""
    how = end.describe()
    if end.ending is Ending.OOM_KILLED:
        return f"{role} ran {how}"
    if how.startswith("ended "):
        return f"{role} {how}"
    return f"{role} ended: {how}"


# The rows of `policy_table`: how a role ended, in words, and the JobSet's view of it.
_TABLE_ROWS: tuple[tuple[str, RoleEnd, str], ...] = (
    ("exit 0", RoleEnd.from_exit(0), "the Job succeeded"),
    (
        "exit 1-127 (the program's own failure)",
        RoleEnd.from_exit(1),
        "`podFailurePolicy` FailJob on exit codes 1-127",
    ),
    (
        "killed by a signal (exit >= 128)",
        RoleEnd.from_exit(137),
        "any other end: counted (`backoffLimit`, `maxRestarts`)",
    ),
    (
        "out of memory (OOM-killed)",
        RoleEnd.from_exit(137, oom_killed=True),
        "exit 137, as a SIGKILL: counted",
    ),
    (
        "preempted, evicted, node shut down",
        RoleEnd.from_exit(143, preempted=True),
        "`DisruptionTarget` condition: not counted",
    ),
    (
        "never started (not scheduled, no image)",
        RoleEnd(ending=Ending.NOT_STARTED),
        "not failed by the JobSet (bound the wait with Kueue's `waitForPodsReady`)",
    ),
    (
        "stopped on request (its task killed, its run marked failed)",
        RoleEnd(ending=Ending.STOPPED, exit_code=143),
        "a deleted pod: as a signal",
    ),
)
_IN_WORDS = {
    Action.SUCCEEDED: "succeeded",
    Action.FAIL_JOB: "the job fails now",
    Action.RESTART_ROLE: "restarted alone",
    Action.RESTART_JOB: "every role restarted from the last checkpoint",
    Action.LEAVE_STOPPED: "left stopped; the others go on, the job then fails",
}


def policy_table() -> str:
    """What `decide` does with each way a role can end, as a Markdown table."""
    rows = [
        "| how the role ended | evaluator, parameter-server worker | chief, ps, all-reduce "
        "worker | on a JobSet |",
        "|---|---|---|---|",
    ]
    for label, end, jobset in _TABLE_ROWS:
        cells = []
        for role in (RoleId(kind=Role.EVALUATOR, index=0), RoleId(kind=Role.CHIEF, index=0)):
            verdict = decide(role, end, uses_parameter_servers=True, policy=RestartPolicy())
            counted = "" if verdict.counted or verdict.action in _FINAL else ", not counted"
            cells.append(_IN_WORDS[verdict.action] + counted)
        rows.append(f"| {label} | {' | '.join(cells)} | {jobset} |")
    return "\n".join(rows)


_FINAL = (Action.SUCCEEDED, Action.FAIL_JOB, Action.LEAVE_STOPPED)
