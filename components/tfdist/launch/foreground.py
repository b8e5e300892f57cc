"""Run a job in the foreground: launch every role, stream their logs, stop them all at the end.

This is `tfdist run`. When a role ends, the one policy of `tfdist.lifecycle` says what happens
next, as it does for the Airflow watch tasks: a crashed evaluator or parameter-server worker
is started again alone, a crashed chief, ps or all-reduce worker restarts every role from the
last checkpoint, each within the spec's `restart_policy`; a failure of the program itself
ends the job at once, naming the role and its last log lines.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tfdist.backend import Backend, JobHandle, RoleState, RoleStatus
from tfdist.lifecycle import Action, Ending, RoleEnd, RoleId, triage
from tfdist.plan import JobPlan
from tfdist.spec import RestartPolicy, Role

POLL_SECS = 0.5
SERVER_EXIT_GRACE_SECS = 30.0
SETTLE_SECS = 1.0
TAIL_LINES = 20


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    failed_role: str | None = None
    detail: str = ""
    last_lines: tuple[str, ...] = ()


@dataclass
class _Logs:
    """Copies each role's new log lines through `write`, keeping the last few of each."""

    backend: Backend
    handle: JobHandle
    write: Callable[[str], None]
    offsets: dict[str, int] = field(default_factory=dict)
    tails: dict[str, deque[str]] = field(default_factory=dict)

    def copy(self) -> None:
        for role in self.handle.roles:
            text, self.offsets[role] = self.backend.read_log(
                self.handle, role, self.offsets.get(role, 0)
            )
            tail = self.tails.setdefault(role, deque(maxlen=TAIL_LINES))
            for line in text.splitlines():
                tail.append(line)
                self.write(f"[{role}] {line}")


def run_in_foreground(
    job: JobPlan,
    backend: Backend,
    write: Callable[[str], None] = print,
    policy: RestartPolicy | None = None,
    settle_secs: float = SETTLE_SECS,
) -> Outcome:
    """Launch the plan, stream role-prefixed log lines through `write`, apply the restart
    policy (default: the spec's) to every role that ends, return the job's outcome."""
    policy = policy or job.spec.restart_policy
    handle = backend.launch(job)
    write(f"tfdist: launched {', '.join(handle.roles)} ({handle.job_id})")
    logs = _Logs(backend, handle, write)
    try:
        return _follow(job, backend, handle, logs, write, policy, settle_secs)
    finally:
        backend.stop(handle)
        logs.copy()  # the last lines, such as a traceback


def _follow(
    job: JobPlan,
    backend: Backend,
    handle: JobHandle,
    logs: _Logs,
    write: Callable[[str], None],
    policy: RestartPolicy,
    settle_secs: float,
) -> Outcome:
    uses_ps = job.spec.cluster.uses_parameter_servers
    role_restarts: Counter[str] = Counter()
    job_restarts = 0
    chief_done_at: float | None = None
    while True:
        logs.copy()
        statuses = backend.statuses(handle)
        if statuses["chief-0"].state is RoleState.SUCCEEDED:
            chief_done_at = chief_done_at or time.monotonic()
        if _failures(statuses, chief_done_at):
            time.sleep(settle_secs)  # a crash's exit record may land after the failure it caused
            statuses = backend.statuses(handle)
            found = triage(
                _failures(statuses, chief_done_at),
                uses_parameter_servers=uses_ps,
                policy=policy,
                role_restarts=role_restarts,
                job_restarts=job_restarts,
            )
            if found is not None:
                role, verdict = found
                write(f"tfdist: {verdict.reason}")
                if verdict.action is Action.FAIL_JOB:
                    logs.copy()
                    tail = tuple(logs.tails.get(role.name, ()))
                    return Outcome(False, role.name, verdict.reason, tail)
                if verdict.action is Action.RESTART_ROLE:
                    role_restarts[role.name] += verdict.counted
                    backend.relaunch(handle, role.name)
                else:
                    job_restarts += verdict.counted
                    backend.relaunch_job(handle)
                    chief_done_at = None
                continue
        if all(s.state is RoleState.SUCCEEDED for s in statuses.values()):
            return Outcome(succeeded=True)
        if chief_done_at is not None:
            # The chief is done; ps and workers serve nothing more. Only the evaluator has
            # work left (the final checkpoint), and it ends on its own.
            lingering = [
                role
                for role, status in statuses.items()
                if not status.state.finished and RoleId.parse(role).kind is not Role.EVALUATOR
            ]
            evaluator_done = all(
                status.state.finished
                for role, status in statuses.items()
                if RoleId.parse(role).kind is Role.EVALUATOR
            )
            grace_over = time.monotonic() - chief_done_at > SERVER_EXIT_GRACE_SECS
            if lingering and evaluator_done and grace_over:
                write(f"tfdist: {', '.join(lingering)} still running after the chief; stopping")
                backend.stop(handle, lingering)
                return Outcome(succeeded=True, detail=f"stopped {', '.join(lingering)}")
            if not lingering and evaluator_done:
                return Outcome(succeeded=True)
        unfinished = [role for role, status in statuses.items() if not status.state.finished]
        backend.wait(handle, unfinished, POLL_SECS)


def _failures(
    statuses: Mapping[str, RoleStatus], chief_done_at: float | None
) -> dict[str, RoleEnd]:
    """The roles that ended other than well and still matter: once the chief is done, only
    the evaluator's end does."""
    ends = {}
    for role, status in statuses.items():
        end = status.end
        if end is None or end.ending is Ending.SUCCEEDED:
            continue
        if chief_done_at is not None and RoleId.parse(role).kind is not Role.EVALUATOR:
            continue
        ends[role] = end
    return ends
