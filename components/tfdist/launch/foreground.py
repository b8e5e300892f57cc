"""Run a job in the foreground: launch every role, stream their logs, stop them all at the end.

This is `tfdist run`, a thin driver of `tfdist.supervisor`: it copies every role's new log
lines, takes one supervisor step (`tfdist.supervision.drive`) and waits for a role to end,
until the supervisor records the job's outcome. What a role's end means is the same table the
Airflow watch tasks drive: a crashed evaluator or parameter-server worker is started again
alone, a crashed chief, ps or all-reduce worker restarts every role from the last checkpoint,
each within the spec's `restart_policy`; a failure of the program itself ends the job at once,
naming the role and its last log lines.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tfdist.backend import Backend, JobHandle
from tfdist.plan import JobPlan
from tfdist.spec import RestartPolicy
from tfdist.supervision import drive, take_over
from tfdist.supervisor import SETTLE_SECS, Supervised

POLL_SECS = 0.5
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
    clock: Callable[[], float] = time.time,
    resume: JobHandle | None = None,
) -> Outcome:
    """Launch the plan (or take over the launch `resume`, whose runner went away), stream
    role-prefixed log lines through `write`, drive the supervisor (restart budgets: `policy`,
    default the spec's) until it decides, return the outcome."""
    if resume is None:
        handle = backend.launch(job)
        write(f"tfdist: launched {', '.join(handle.roles)} ({handle.job_id})")
    else:
        handle = resume
        write(f"tfdist: {take_over(backend, handle).say} ({handle.job_id})")
    supervised = Supervised.of(
        job.spec,
        handle.roles,
        engine_runs_policy=backend.capabilities.runs_policy,
        policy=policy,
    ).model_copy(update={"settle_secs": settle_secs})
    logs = _Logs(backend, handle, write)
    try:
        while True:
            logs.copy()
            driven = drive(backend, handle, supervised, clock())
            if driven.step.say:
                write(f"tfdist: {driven.step.say}")
            outcome = driven.step.state.outcome
            if outcome is not None and outcome.succeeded:
                return Outcome(succeeded=True, detail=outcome.reason)
            if outcome is not None:
                logs.copy()
                tail = tuple(logs.tails.get(outcome.role or "", ()))
                return Outcome(False, outcome.role, outcome.reason, tail)
            unfinished = [name for name, s in driven.statuses.items() if not s.state.finished]
            backend.wait(handle, unfinished, POLL_SECS)
    finally:
        backend.stop(handle)
        logs.copy()  # the last lines, such as a traceback
