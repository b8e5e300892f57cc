"""Run a job in the foreground: launch every role, stream their logs, stop them all at the end.

This is `tfdist run`. Airflow does the same in separate tasks (launch, one watch per role,
teardown), but both use `job_outcome` to decide when a job has succeeded or failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tfdist.launch.base import JobHandle, Launcher, RoleState, RoleStatus
from tfdist.plan import JobPlan

POLL_SECS = 0.5
SERVER_EXIT_GRACE_SECS = 30.0


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


def run_in_foreground(
    job: JobPlan, launcher: Launcher, write: Callable[[str], None] = print
) -> Outcome:
    """Launch the plan, stream role-prefixed log lines through `write`, return the outcome."""
    handle = launcher.launch(job)
    write(f"tfdist: launched {', '.join(handle.roles)} ({handle.job_id})")
    offsets = dict.fromkeys(handle.roles, 0)
    try:
        return _watch(handle, launcher, write, offsets)
    finally:
        launcher.stop(handle)
        _copy_logs(handle, launcher, write, offsets)  # the last lines, such as a traceback


def _copy_logs(
    handle: JobHandle, launcher: Launcher, write: Callable[[str], None], offsets: dict[str, int]
) -> None:
    for role in handle.roles:
        text, offsets[role] = launcher.read_log(handle, role, offsets[role])
        for line in text.splitlines():
            write(f"[{role}] {line}")


def _watch(
    handle: JobHandle, launcher: Launcher, write: Callable[[str], None], offsets: dict[str, int]
) -> Outcome:
    chief_done_at: float | None = None
    while True:
        _copy_logs(handle, launcher, write, offsets)
        statuses = {role: launcher.status(handle, role) for role in handle.roles}
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
        time.sleep(POLL_SECS)
