"""The launcher interface: start every role of a plan together, then watch and stop each one.

A `JobHandle` is plain data (JSON-serialisable) so that the task that launched a job and the
tasks that watch or tear it down can be different processes, as they are in Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from tfdist.plan import JobPlan
from tfdist.spec import JobSpec


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


class RoleStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    state: RoleState
    exit_code: int | None = None
    detail: str = ""

    @property
    def retryable(self) -> bool:
        """Killed by a signal or preempted (exit >= 128) rather than failed on its own (1-127)."""
        return self.state is RoleState.FAILED and (self.exit_code is None or self.exit_code >= 128)


class JobHandle(BaseModel):
    """Where a launched job lives; enough for any process to find it again."""

    model_config = ConfigDict(frozen=True)

    backend: str
    job_id: str  # a run directory (local) or a label value (Kubernetes)
    launch_id: str
    roles: tuple[str, ...]


class Launcher(Protocol):
    """One backend: local processes, Kubernetes pods, or the in-memory fake."""

    def addresses(self, spec: JobSpec) -> Mapping[str, Sequence[str]]:
        """One reachable `host:port` per replica of chief, worker and ps."""
        ...

    def launch(self, plan: JobPlan) -> JobHandle:
        """Start every role of the plan at once (a gang), without waiting for them."""
        ...

    def status(self, handle: JobHandle, role: str) -> RoleStatus: ...

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        """The role's log from byte `offset`, and the offset to continue from."""
        ...

    def relaunch(self, handle: JobHandle, role: str) -> None:
        """Start one finished role again with its original command and environment."""
        ...

    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        """Stop the given roles (default: all) and wait until they are gone."""
        ...


@runtime_checkable
class AdmitsJobs(Protocol):
    """A launcher that can refuse a job before planning it (the local one: a trainer that is
    not there, a cluster beyond the machine)."""

    def admit(self, spec: JobSpec) -> None:
        """Raise `LaunchRefused` if the job cannot run here; starts and writes nothing."""
        ...
