"""Run a job in the foreground: launch every role, stream their logs, stop them all at the end.

This is `tfdist run`. Airflow does the same in separate tasks (launch, one watch per role,
teardown), but both use `job_outcome` to decide when a job has succeeded or failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tfdist.backend import Backend, JobHandle, RoleState, RoleStatus
from tfdist.lifecycle import Ending
from tfdist.plan import JobPlan

POLL_SECS = 0.5
SERVER_EXIT_GRACE_SECS = 30.0
SETTLE_SECS = 1.0


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    failed_role: str | None = None
    detail: str = ""


def job_outcome(statuses: Mapping[str, RoleStatus]) -> Outcome | None:
    """The job's result once it is decided, else None. The chief's failure is reported first."""
    failed = [s for s in statuses.values() if s.state is RoleState.FAILED]
    if failed:
        first = next((s for s in failed if s.name.startswith("chief-")), failed[0])
        how = f"exit code {first.exit_code}" if first.exit_code is not None else first.detail
        return Outcome(succeeded=False, failed_role=first.name, detail=how)
    if all(s.state is RoleState.SUCCEEDED for s in statuses.values()):
        return Outcome(succeeded=True)
    return None


def crashed_roles(statuses: Mapping[str, RoleStatus]) -> list[str]:
    """The roles killed by a signal (exit code >= 128) rather than failed on their own, as
    `worker-0 (exit code 137)`."""
    return [
        f"{name} ({f'exit code {s.exit_code}' if s.exit_code is not None else s.detail})"
        for name, s in statuses.items()
        if (end := s.end) is not None
        and end.ending in (Ending.CRASHED, Ending.OOM_KILLED, Ending.PREEMPTED)
    ]


def run_in_foreground(
    job: JobPlan, launcher: Backend, write: Callable[[str], None] = print, restarts: int = 0
) -> Outcome:
    """Launch the plan, stream role-prefixed log lines through `write`, return the outcome.

    When a role crashes (killed by a signal or preempted, exit code >= 128), every role is
    stopped and started again, up to `restarts` times: training resumes from the latest
    checkpoint, the evaluator skips what it already evaluated. A role that fails on its own
    (exit code 1-127) ends the job at once.
    """
    handle = launcher.launch(job)
    write(f"tfdist: launched {', '.join(handle.roles)} ({handle.job_id})")
    offsets = dict.fromkeys(handle.roles, 0)
    try:
        restart = 0
        while True:
            outcome = _watch(handle, launcher, write, offsets)
            if outcome.succeeded or restart == restarts:
                return outcome
            crashed = _crashed(handle, launcher)
            if not crashed:
                return outcome
            restart += 1
            write(
                f"tfdist: {', '.join(crashed)} crashed; restarting every role from the latest "
                f"checkpoint (restart {restart} of {restarts})"
            )
            launcher.stop(handle)
            _copy_logs(handle, launcher, write, offsets)
            for role in handle.roles:
                launcher.relaunch(handle, role)
    finally:
        launcher.stop(handle)
        _copy_logs(handle, launcher, write, offsets)  # the last lines, such as a traceback


def _crashed(handle: JobHandle, launcher: Backend) -> list[str]:
    time.sleep(SETTLE_SECS)  # a crash's exit record may land after the failure it caused
    return crashed_roles(launcher.statuses(handle))


def _copy_logs(
    handle: JobHandle, launcher: Backend, write: Callable[[str], None], offsets: dict[str, int]
) -> None:
    for role in handle.roles:
        text, offsets[role] = launcher.read_log(handle, role, offsets[role])
        for line in text.splitlines():
            write(f"[{role}] {line}")


def _watch(
    handle: JobHandle, launcher: Backend, write: Callable[[str], None], offsets: dict[str, int]
) -> Outcome:
    chief_done_at: float | None = None
    while True:
        _copy_logs(handle, launcher, write, offsets)
        statuses = launcher.statuses(handle)
        outcome = job_outcome(statuses)
        if outcome is not None:
            return outcome
        if statuses["chief-0"].state is RoleState.SUCCEEDED:
            chief_done_at = chief_done_at or time.monotonic()
            lingering = [
                role
                for role, status in statuses.items()
                if not status.state.finished and not role.startswith("evaluator-")
            ]
            if lingering and time.monotonic() - chief_done_at > SERVER_EXIT_GRACE_SECS:
                write(f"tfdist: {', '.join(lingering)} still running after the chief; stopping")
                launcher.stop(handle, lingering)
                return Outcome(succeeded=True, detail=f"stopped {', '.join(lingering)}")
        unfinished = [role for role, status in statuses.items() if not status.state.finished]
        launcher.wait(handle, unfinished, POLL_SECS)
