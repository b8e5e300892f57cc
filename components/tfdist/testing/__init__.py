"""Fakes for tests: no process, no cluster, no TensorFlow.

- `FakeBackend` (here): an in-memory `tfdist.backend.Backend`.
- `tfdist.testing.jobset_cluster.FakeJobSetCluster`: in-memory JobSet, Job and Kueue
  controllers behind the `KubeApi` interface the JobSet backend talks to, held to the engines'
  own test cases (`tests/unit/test_jobset_conformance.py`); `tfdist.testing.kube_api` is its
  API server part.

For testing a DAG of your own, give its step `FakeBackendConfig(name=...)`
(`tfdist_airflow.backends`) and set `FakeBackend.named(name).roles_end_with = 0`: every role
then succeeds as soon as it is launched (docs/testing-dags.md has a whole test).

Every launched role starts out running. Tests move roles along themselves (`exit`,
`write_log`) and read what was asked of the backend in `calls` (`(verb, what)` pairs: one
per request a real backend would make). `ticks` lets a test script a run: each `wait`
applies the next one, as if time passed; a `wait` once a scripted run has used every tick
raises `ScriptExhausted` at once (a runner that would wait forever fails instead). Tasks and
triggers find a fake by name (`FakeBackend.named`), so an Airflow test can configure
`{"kind": "fake", "name": ...}`. Each launch keeps its supervision record in memory.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

from tfdist.backend import (
    JobHandle,
    LaunchError,
    RoleState,
    RoleStatus,
    SupervisionRecord,
)
from tfdist.capabilities import FAKE
from tfdist.lifecycle import Ending
from tfdist.plan import JobPlan, plan
from tfdist.spec import JobSpec, Role
from tfdist.supervisor import Command, RestartJob, RestartRole, StopRoles, SupervisionState


class ScriptExhausted(RuntimeError):
    """A scripted run waited after its last tick: it would otherwise wait forever."""


BACKEND = "fake"


@dataclass
class FakeLaunch:
    job: JobPlan
    handle: JobHandle
    statuses: dict[str, RoleStatus]
    logs: dict[str, str]
    tries: dict[str, int] = field(default_factory=dict)
    supervision: SupervisionState = field(default_factory=SupervisionState)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeBackend:
    """Implements `tfdist.backend.Backend` in memory."""

    capabilities = FAKE

    _named: ClassVar[dict[str, FakeBackend]] = {}

    def __init__(self) -> None:
        self.launches: dict[str, FakeLaunch] = {}  # by launch id, oldest first
        self.calls: list[tuple[str, str]] = []
        self.ticks: list[Callable[[FakeBackend], None]] = []
        self.scripted = False  # set once ticks are given: waiting past the last one fails
        self.now = 0.0  # simulated seconds: each `wait` lets its timeout pass
        self.exports: list[tuple[str, str]] = []  # (checkpoint, out)
        self.refuse_launch = ""  # when set, `launch` raises `LaunchError` with it
        self.roles_end_with: int | None = None  # when set, every role ends so when launched

    @classmethod
    def named(cls, name: str) -> FakeBackend:
        """The fake of that name in this process, created on first use."""
        return cls._named.setdefault(name, cls())

    @classmethod
    def forget(cls, name: str) -> None:
        cls._named.pop(name, None)

    # -- the Backend interface ------------------------------------------------------------
    def admit(self, spec: JobSpec) -> None:
        self.calls.append(("admit", spec.name))

    def plan(self, spec: JobSpec, scope: str) -> JobPlan:
        addresses = {
            role.value: [f"{role.value}-{i}.fake:2222" for i in range(spec.cluster.count(role))]
            for role in (Role.CHIEF, Role.WORKER, Role.PS)
        }
        return plan(spec, addresses, scope=scope, launch_id=uuid.uuid4().hex[:8])

    def launch(self, job: JobPlan) -> JobHandle:
        self.calls.append(("launch", job.spec.name))
        if self.refuse_launch:
            raise LaunchError(self.refuse_launch)
        launch_id = job.launch_id or uuid.uuid4().hex[:8]
        handle = JobHandle(
            backend=BACKEND,
            job_id=f"{job.scope}/{job.spec.name}-{launch_id}",
            launch_id=launch_id,
            roles=tuple(job.role_names),
        )
        self.launches[launch_id] = FakeLaunch(
            job=job,
            handle=handle,
            statuses={r: RoleStatus(name=r, state=RoleState.RUNNING) for r in handle.roles},
            logs=dict.fromkeys(handle.roles, ""),
            tries=dict.fromkeys(handle.roles, 1),
        )
        if self.roles_end_with is not None:
            for role in handle.roles:
                self.exit(role, self.roles_end_with, handle=handle)
        return handle

    def statuses(self, handle: JobHandle) -> dict[str, RoleStatus]:
        self.calls.append(("statuses", handle.launch_id))
        return dict(self._launch(handle).statuses)

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        self.calls.append(("read_log", role))
        data = self._launch(handle).logs[role].encode()
        end = data.rfind(b"\n", offset) + 1
        if end <= offset:
            return "", offset
        return data[offset:end].decode(), end

    def clock(self) -> float:
        """The simulated time, for a runner's `clock`."""
        return self.now

    def wait(self, handle: JobHandle, roles: Sequence[str], timeout: float) -> None:
        self.now += timeout
        if self.ticks:
            self.scripted = True
            self.ticks.pop(0)(self)
        elif self.scripted:
            raise ScriptExhausted(f"waited for {', '.join(roles)} after the last scripted tick")

    def script(self, *ticks: Callable[[FakeBackend], None]) -> None:
        """What happens at each `wait`, in order; one more `wait` raises `ScriptExhausted`."""
        self.ticks = list(ticks)
        self.scripted = True

    def apply(self, handle: JobHandle, command: Command) -> None:
        launch = self._launch(handle)
        match command:
            case RestartRole(role=role):
                self.calls.append(("relaunch", role))
                if not launch.statuses[role].state.finished:
                    raise RuntimeError(f"{role} is still running; stop it before starting it again")
                self._restart(launch, role)
            case RestartJob():
                self.calls.append(("relaunch_job", handle.launch_id))
                for role in handle.roles:
                    self._restart(launch, role)
            case StopRoles(roles=roles):
                self.stop(handle, roles)

    @contextmanager
    def supervision(self, handle: JobHandle) -> Iterator[SupervisionRecord]:
        launch = self._launch(handle)
        with launch.lock:
            record = SupervisionRecord(launch.supervision)
            yield record
            launch.supervision = record.state

    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        self.calls.append(("stop", ",".join(roles) if roles is not None else "*"))
        launch = self.launches.get(handle.launch_id)
        if launch is None:
            return
        for role in roles if roles is not None else handle.roles:
            if not launch.statuses[role].state.finished:
                self.exit(role, 143, detail="stopped", ending=Ending.STOPPED, handle=handle)

    def handles(self, scope: str) -> list[JobHandle]:
        self.calls.append(("handles", scope))
        return [launch.handle for launch in self.launches.values() if launch.job.scope == scope]

    def cleanup(self, handle: JobHandle) -> None:
        self.calls.append(("cleanup", handle.launch_id))
        self.launches.pop(handle.launch_id, None)

    def export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: Mapping[str, str],
        log: Callable[[str], None],
    ) -> None:
        self.calls.append(("export", checkpoint))
        self.exports.append((checkpoint, out))
        log(f"exported {checkpoint} to {out}")

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        self.calls.append(("stop_export", checkpoint))

    # -- what the roles would do ------------------------------------------------------------
    def write_log(self, role: str, text: str, handle: JobHandle | None = None) -> None:
        self._launch(handle).logs[role] += text

    def exit(
        self,
        role: str,
        code: int,
        *,
        detail: str = "",
        ending: Ending | None = None,
        handle: JobHandle | None = None,
    ) -> None:
        """End `role` (of `handle`, default the latest launch) with exit code `code`."""
        state = RoleState.SUCCEEDED if code == 0 and ending is None else RoleState.FAILED
        self._launch(handle).statuses[role] = RoleStatus(
            name=role,
            state=state,
            exit_code=code,
            detail=detail,
            ending=ending,
            ended_at=self.now,
        )

    @property
    def latest(self) -> JobHandle:
        """The handle of the latest launch."""
        return self._launch(None).handle

    def tries(self, role: str, handle: JobHandle | None = None) -> int:
        """How many times `role` was started (1 until it is relaunched)."""
        return self._launch(handle).tries[role]

    def _launch(self, handle: JobHandle | None) -> FakeLaunch:
        if handle is None:
            if not self.launches:
                raise LookupError("nothing was launched")
            return list(self.launches.values())[-1]
        try:
            return self.launches[handle.launch_id]
        except KeyError:
            raise LookupError(f"no launch {handle.launch_id} (cleaned up?)") from None

    def _restart(self, launch: FakeLaunch, role: str) -> None:
        launch.tries[role] += 1
        launch.logs[role] += f"----- starting {role} again -----\n"
        launch.statuses[role] = RoleStatus(name=role, state=RoleState.RUNNING)
