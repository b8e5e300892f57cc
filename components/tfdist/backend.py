"""The backend interface: what a runner needs of the place where roles run, in one place.

`tfdist run`, the Airflow tasks and triggers, and the benchmarks all go through `Backend`:
plan a launch in a scope, start every role together, observe every role in one call, carry out
the supervisor's commands (`tfdist.supervisor`), hold the launch's durable supervision record,
find the launches of a scope again, read a role's log from a cursor, clean up, export. What a
backend can do is data (`Capabilities`), never a behaviour flag callers branch on. Local
processes (`tfdist.launch.local.LocalLauncher`), JobSets on Kubernetes
(`tfdist.kubernetes.jobset_launcher.JobSetLauncher`) and the in-memory `tfdist.testing.FakeBackend`
implement it.

A `JobHandle` is plain data (JSON-serialisable) so that the task that launched a job and the
tasks that watch or tear it down can be different processes, as they are in Airflow. A
finished role's `RoleStatus` carries how it ended (`RoleStatus.end`), the input of the one
restart policy in `tfdist.lifecycle`, whatever the backend observed (an exit record, a pod's
state), and when (`ended_at`, from the exit record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tfdist.capabilities import Capabilities
from tfdist.lifecycle import Ending, RoleEnd, RoleId
from tfdist.plan import JobPlan
from tfdist.records import Admission
from tfdist.spec import Frozen, JobSpec

if TYPE_CHECKING:
    from tfdist.supervisor import Command, SupervisionState

__all__ = [
    "EXPORT_TIMEOUT_SECS",
    "Backend",
    "Capabilities",
    "JobHandle",
    "LaunchError",
    "LaunchRefused",
    "RoleState",
    "RoleStatus",
    "SupervisionRecord",
]

EXPORT_TIMEOUT_SECS = 1800  # how long an export may run, once running


class LaunchError(RuntimeError):
    """A launch that could not start; whatever it had started is stopped again."""


class LaunchRefused(LaunchError):
    """Refused before anything was started or written: the job as given cannot run here (a
    trainer that is not there, a cluster beyond the machine); no retry can change that."""


class RoleState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RoleState.SUCCEEDED, RoleState.FAILED)


class RoleStatus(Frozen):
    """One role as its backend last saw it. `detail` says why it waits, or how it ended.

    `ending` is set by a backend that knows more than the exit code (out of memory, preempted,
    never started); otherwise the exit code decides (see `end`).
    """

    name: str
    state: RoleState
    exit_code: int | None = None
    detail: str = ""
    ending: Ending | None = None
    ended_at: float | None = None  # seconds since the epoch, as the exit record says
    admission: Admission | None = None  # the launch's wait in a queue, where it has one

    @property
    def role(self) -> RoleId:
        return RoleId.parse(self.name)

    @property
    def end(self) -> RoleEnd | None:
        """How the role ended, for `tfdist.lifecycle.decide`; None while it has not."""
        if not self.state.finished:
            return None
        if self.state is RoleState.SUCCEEDED:
            return RoleEnd(ending=Ending.SUCCEEDED, exit_code=0, detail=self.detail)
        if self.ending is not None:
            return RoleEnd(ending=self.ending, exit_code=self.exit_code, detail=self.detail)
        if self.exit_code == 0:  # failed from outside although its program exited cleanly
            return RoleEnd(ending=Ending.CRASHED, exit_code=0, detail=self.detail)
        return RoleEnd.from_exit(self.exit_code, detail=self.detail)


class JobHandle(Frozen):
    """Where a launched job lives; enough for any process to find it again."""

    backend: str
    job_id: str  # a run directory (local) or `<namespace>/<jobset>` (Kubernetes)
    launch_id: str
    roles: tuple[str, ...]


@dataclass
class SupervisionRecord:
    """A launch's supervision state, held exclusively while a runner takes one step; what it
    holds when the `with` block ends without an error is kept."""

    state: SupervisionState


class Backend(Protocol):
    """Where roles run. `scope` names one train-and-evaluate step (of one Airflow run, say
    `<dag>/<run>/<group>`); each launch in it gets its own id."""

    capabilities: Capabilities

    def admit(self, spec: JobSpec) -> None:
        """Raise `LaunchRefused` if the job cannot run here; starts and writes nothing."""
        ...

    def plan(self, spec: JobSpec, scope: str) -> JobPlan:
        """A new launch of `spec` in `scope`: every role's address, `TF_CONFIG` and command."""
        ...

    def launch(self, job: JobPlan) -> JobHandle:
        """Start every role of the plan at once (a gang), without waiting for them; raises
        `LaunchError` with nothing left running if one cannot start."""
        ...

    def statuses(self, handle: JobHandle) -> dict[str, RoleStatus]:
        """Every role's status, by role name, read in one go (one request on a cluster)."""
        ...

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        """The role's whole log lines from byte `offset`, and the offset to continue from."""
        ...

    def wait(self, handle: JobHandle, roles: Sequence[str], timeout: float) -> None:
        """Return after `timeout` seconds, or sooner once one of `roles` may have ended."""
        ...

    def apply(self, handle: JobHandle, command: Command) -> None:
        """Carry out one of the supervisor's commands: restart a role alone, restart every role
        at the same addresses (training resumes from the last checkpoint), stop roles."""
        ...

    def supervision(self, handle: JobHandle) -> AbstractContextManager[SupervisionRecord]:
        """The launch's supervision record, held exclusively until the `with` block ends: two
        runners never decide on the same observation (one relaunch of the gang, however many
        watchers see the crash)."""
        ...

    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        """Stop the given roles (default: all) and wait until they are gone."""
        ...

    def handles(self, scope: str) -> list[JobHandle]:
        """Every launch in `scope` that is still there, oldest first."""
        ...

    def cleanup(self, handle: JobHandle) -> None:
        """Remove what a finished launch leaves behind (pods, Services); logs may stay."""
        ...

    def export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: Mapping[str, str],
        log: Callable[[str], None],
    ) -> None:
        """Export `checkpoint` as a SavedModel to `out` where the roles run, with `env` (it
        needs `TFDIST_JOB`); each line of its output goes to `log`. Raises `RuntimeError`."""
        ...

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Stop an export of `checkpoint` still running (a killed export task must)."""
        ...
