"""The watch trigger with real processes: when a role's end fails the job, the trigger that sees
it stops every other role (none is left waiting for a chief that is gone) and fires."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tfdist.backend import RoleState
from tfdist.spec import parse_spec
from tfdist.supervisor import Supervised
from tfdist_airflow.backends import LocalBackend
from tfdist_airflow.triggers import RoleExitTrigger

pytestmark = pytest.mark.integration

# A role program: the chief fails after a moment, every other role would wait forever.
ROLE_PROGRAM = (
    "import json, os, sys, time\n"
    "task = json.loads(os.environ['TF_CONFIG'])['task']['type']\n"
    "print(task, 'up', flush=True)\n"
    "time.sleep(1)\n"
    "sys.exit(3) if task == 'chief' else time.sleep(600)\n"
)


async def first_event(trigger: RoleExitTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def test_every_role_is_stopped_when_the_chief_fails(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "name": "doomed",
            "trainer": {"command": [sys.executable, "-c", ROLE_PROGRAM]},
            "cluster": {"chief": 1, "worker": 1, "ps": 1},
            "train_spec": {"max_steps": 10},
            "model_dir": str(tmp_path / "model"),
        }
    )
    backend = LocalBackend(run_root=str(tmp_path / "runs"))
    launcher = backend.connect()
    handle = launcher.launch(launcher.plan(spec, "scope"))
    try:
        trigger = RoleExitTrigger(
            backend=backend.model_dump(mode="json"),
            handle=handle.model_dump(mode="json"),
            role="ps-0",
            job=Supervised.of(spec, handle.roles).model_dump(mode="json"),
            poll_interval=0.2,
        )
        event = asyncio.run(asyncio.wait_for(first_event(trigger), timeout=60))
        assert set(event) == {"log_offset"}  # no error
        with launcher.supervision(handle) as record:
            outcome = record.state.outcome
        assert outcome is not None and (outcome.role, outcome.reason) == (
            "chief-0",
            "chief-0 failed with exit code 3: a failure of the program itself, which no "
            "restart fixes",
        )
        statuses = launcher.statuses(handle)
        assert statuses["chief-0"].exit_code == 3
        for role in ("ps-0", "worker-0"):  # stopped with the job, by this one trigger
            assert (statuses[role].state, statuses[role].detail) == (RoleState.FAILED, "stopped")
    finally:
        launcher.stop(handle)
    assert all(launcher.statuses(handle)[role].state.finished for role in handle.roles)
