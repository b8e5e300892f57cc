"""The fault table of `tests/integration/dags/lifecycle_faults.py` on the in-memory backend and
on the JobSet backend over the fake JobSet, Job and Kueue controllers: the same cases, the same
outcome, tries and words as through `tfdist run` and Airflow with real processes
(`test_lifecycle_cases.py`).

`RoleProgram` plays the table's role program one poll at a time: a role with a fault fails on
its first try (every try for `kill-always`, once the chief is done for `kill-after-chief`);
the chief ends after a few polls, the others once it did. On the in-memory backend it moves
the `FakeBackend`'s roles; on the JobSet fake it starts and ends the current pods, and the
fake controllers restart, fail or finish the JobSet by its compiled policy. Both scripts are
finite: a runner that never decides fails (`ScriptExhausted`, or the poll budget here).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfdist.kubernetes.jobset import jobset_name
from tfdist.kubernetes.jobset_launcher import JobSetLauncher, Snapshots
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.names import RunRef
from tfdist.launch.foreground import run_in_foreground
from tfdist.spec import parse_spec
from tfdist.testing import FakeBackend
from tfdist.testing.jobset_cluster import FakeJobSetCluster

DAGS = Path(__file__).resolve().parents[1] / "integration" / "dags"
CHIEF_POLLS = 6  # the chief's work, in polls of 0.5 s
FAIL_POLLS = 2  # a fault strikes this many polls into a try


def _table() -> ModuleType:
    found = importlib.util.spec_from_file_location("lifecycle_faults", DAGS / "lifecycle_faults.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules["lifecycle_faults"] = module  # its dataclasses look their module up
    found.loader.exec_module(module)
    return module


TABLE = _table()


class RoleProgram:
    """The table's role program, one poll at a time, over any set of running roles."""

    def __init__(self, faults: dict[str, str]):
        self.faults = faults
        self.polls: dict[tuple[str, int], int] = {}  # polls into each (role, try)
        self.chief_done = False

    def step(
        self, running: dict[str, int], chief_running: bool, end: Callable[[str, int], None]
    ) -> None:
        """`running`: each running role's try; `end(role, exit_code)` ends one."""
        if chief_running:
            self.chief_done = False  # a restarted chief has its work ahead of it again
        for role, attempt in running.items():
            polls = self.polls[role, attempt] = self.polls.get((role, attempt), 0) + 1
            fault = self.faults.get(role, "")
            at_once = (fault in ("exit-3", "kill") and attempt == 1) or fault == "kill-always"
            if fault == "kill-after-chief" and self.chief_done:
                end(role, 137)
            elif at_once and polls >= FAIL_POLLS:
                end(role, 3 if fault == "exit-3" else 137)
            elif role == "chief-0" and polls >= CHIEF_POLLS:
                end(role, 0)
                self.chief_done = True
            elif role != "chief-0" and self.chief_done and not fault.startswith("kill-"):
                end(role, 0)  # (`kill-always` and `kill-after-chief` never end well)

    def __call__(self, fake: FakeBackend) -> None:
        statuses = fake.statuses(fake.latest)
        running = {r: fake.tries(r) for r, s in statuses.items() if not s.state.finished}
        self.step(running, "chief-0" in running, lambda role, code: fake.exit(role, code))


@pytest.mark.parametrize("case", TABLE.CASES, ids=[case.name for case in TABLE.CASES])
def test_the_fault_table_on_the_in_memory_backend(case: Any) -> None:
    spec = parse_spec(TABLE.spec(case, "/models"))
    fake = FakeBackend()
    fake.script(*[RoleProgram(case.faults)] * 200)
    lines: list[str] = []

    outcome = run_in_foreground(fake.plan(spec, "table"), fake, lines.append, clock=fake.clock)

    assert outcome.succeeded is case.succeeds, lines
    assert outcome.failed_role == case.failed_role
    for words in case.says:
        if "fails on purpose" not in words:  # the role program's own line: real runs only
            assert words in outcome.detail, outcome.detail
    started = {role: case.tries.get(role, 1) for role in fake.latest.roles}
    if not case.succeeds:
        started = {role: n for role, n in started.items() if role in case.faults}
    assert {role: fake.tries(role) for role in started} == started


class PodProgram:
    """`RoleProgram` on the JobSet fake: starts pending pods, ends running ones; a role's try
    is its pod (a new pod, a new try)."""

    def __init__(
        self, api: FakeJobSetCluster, jobset: str, roles: tuple[str, ...], faults: dict[str, str]
    ):
        self.api, self.jobset, self.roles = api, jobset, roles
        self.program = RoleProgram(faults)
        self.pods: dict[str, list[str]] = {role: [] for role in roles}  # every pod, by role
        self.polls = 0

    def __call__(self, secs: float) -> None:
        self.polls += 1
        assert self.polls < 400, "the runner never decided"
        running: dict[str, int] = {}
        current: dict[str, str] = {}
        for role in self.roles:
            kind, _, index = role.rpartition("-")
            try:
                name = self.api.current_pod(self.jobset, kind, int(index))
            except KeyError:  # no pod in this attempt (yet, or any more)
                continue
            if name not in self.pods[role]:
                self.pods[role].append(name)
            phase = self.api.pod(name)["status"].get("phase")
            if phase == "Pending":
                self.api.start(name)
            elif phase == "Running":
                running[role], current[role] = len(self.pods[role]), name
        self.program.step(
            running, "chief-0" in running, lambda role, code: self.api.exit(current[role], code)
        )

    def tries(self, role: str) -> int:
        return len(self.pods[role])


@pytest.mark.parametrize("case", TABLE.CASES, ids=[case.name for case in TABLE.CASES])
def test_the_fault_table_on_the_jobset_fake(case: Any) -> None:
    spec = parse_spec(TABLE.spec(case, "gs://bucket/models"))
    api = FakeJobSetCluster()
    now = [1_800_000_000.0]
    backend = JobSetLauncher(
        api,
        Target(namespace="ml", image="trainer:1"),
        snapshots=Snapshots(max_age_secs=0),
        clock=lambda: now[0],
    )
    job = backend.plan(spec, "table")
    program = PodProgram(
        api,
        jobset_name(spec.name, RunRef.from_scope("table", job.launch_id)),
        tuple(job.role_names),
        case.faults,
    )

    def sleep(secs: float) -> None:
        now[0] += secs
        program(secs)

    backend.sleep = sleep
    lines: list[str] = []

    outcome = run_in_foreground(job, backend, lines.append, clock=lambda: now[0])

    assert outcome.succeeded is case.succeeds, lines
    assert outcome.failed_role == case.failed_role, outcome
    for words in case.says:
        if "fails on purpose" not in words:
            assert words in outcome.detail, outcome.detail
    started = {role: case.tries.get(role, 1) for role in job.role_names}
    if not case.succeeds:
        started = {role: n for role, n in started.items() if role in case.faults}
    assert {role: program.tries(role) for role in started} == started
