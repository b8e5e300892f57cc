"""The fault table of `tests/integration/dags/lifecycle_faults.py` on the in-memory backend:
the same cases, the same outcome, tries and words as through `tfdist run` and Airflow with real
processes (`test_lifecycle_cases.py`).

`RoleProgram` plays the table's role program on a `FakeBackend`, one poll at a time: a role
with a fault fails on its first try (every try for `kill-always`, once the chief is done for
`kill-after-chief`); the chief ends after a few polls, the others once it did. The script is
finite: a runner that never decides fails with `ScriptExhausted`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfdist.fake import FakeBackend
from tfdist.launch.foreground import run_in_foreground
from tfdist.spec import parse_spec

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
    """The table's role program, one poll at a time."""

    def __init__(self, faults: dict[str, str]):
        self.faults = faults
        self.polls: dict[tuple[str, int], int] = {}  # polls into each (role, try)
        self.chief_done = False

    def __call__(self, fake: FakeBackend) -> None:
        statuses = fake.statuses(fake.latest)
        if all(s.state.finished for s in statuses.values()):
            return
        if not statuses["chief-0"].state.finished:
            self.chief_done = False  # a restarted chief has its work ahead of it again
        for role, status in statuses.items():
            if status.state.finished:
                continue
            attempt = fake.tries(role)
            polls = self.polls[role, attempt] = self.polls.get((role, attempt), 0) + 1
            fault = self.faults.get(role, "")
            at_once = (fault in ("exit-3", "kill") and attempt == 1) or fault == "kill-always"
            if fault == "kill-after-chief" and self.chief_done:
                fake.exit(role, 137)
            elif at_once and polls >= FAIL_POLLS:
                fake.exit(role, 3 if fault == "exit-3" else 137)
            elif role == "chief-0" and polls >= CHIEF_POLLS:
                fake.exit(role, 0)
                self.chief_done = True
            elif role != "chief-0" and self.chief_done and fault != "kill-after-chief":
                fake.exit(role, 0)


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
