"""The supervisor's state lives with the launch: real role processes on the local backend,
watched by Airflow's watch trigger (`RoleExitTrigger`) running in processes of its own, as a
triggerer runs it, or by `tfdist run`. Killing such a process is a triggerer (or a `tfdist
run`) that died; starting the trigger again from its serialized arguments is the triggerer
that took over, `tfdist run --resume` the user who started it again.

Roles run a small program, no TensorFlow: each try is counted in `<model_dir>/<role>.tries`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jobtools import (
    assert_no_process_left,
    attempts,
    kill_role,
    latest_run_dir,
    processes_of,
    role_log,
    run_dirs,
    run_tfdist,
    tfdist_command,
    wait_for,
)

from tfdist.backend import JobHandle, RoleState
from tfdist.launch.local import LocalLauncher
from tfdist.spec import parse_spec
from tfdist.supervision import read_record
from tfdist.supervisor import Supervised

pytestmark = pytest.mark.integration

ROLE_PROGRAM = """
import json, os, pathlib, signal, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
me = f"{task['type']}-{task['index']}"
state = pathlib.Path(os.environ["MODEL_DIR"])
state.mkdir(parents=True, exist_ok=True)
tries = state / f"{me}.tries"
attempt = int(tries.read_text()) + 1 if tries.exists() else 1
part = tries.with_suffix(".part")  # whole or absent: the test reads it meanwhile
part.write_text(str(attempt))
part.replace(tries)
print(me, "try", attempt, flush=True)
if me in os.environ.get("CRASH_LOOP", "").split(","):
    time.sleep(3)  # long enough for the test to stop the first triggerer after one restart
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""

# One trigger in a process of its own; prints the event it fires (after its own log lines).
TRIGGERER = """
import asyncio, json, sys
from tfdist_airflow.triggers import RoleExitTrigger

async def main():
    async for event in RoleExitTrigger(**json.loads(sys.argv[1])).run():
        print("event:", json.dumps(event.payload), flush=True)
        return

asyncio.run(main())
"""


def launch(tmp_path: Path, cluster: dict[str, int], crash_loop: str = "") -> JobHandle:
    spec = parse_spec(
        {
            "name": "held",
            "trainer": {
                "command": [sys.executable, "-c", ROLE_PROGRAM],
                "env": {"CRASH_LOOP": crash_loop},
            },
            "cluster": cluster,
            "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 1},
            "train_spec": {"max_steps": 1},
            "model_dir": str(tmp_path / "model"),
        }
    )
    launcher = LocalLauncher(tmp_path / "runs")
    handle = launcher.launch(launcher.plan(spec, "supervision"))
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    return handle


def trigger_args(tmp_path: Path, handle: JobHandle, role: str) -> dict[str, Any]:
    spec = parse_spec(json.loads((tmp_path / "spec.json").read_text()))
    return {
        "backend": {"kind": "local", "run_root": str(tmp_path / "runs")},
        "handle": handle.model_dump(mode="json"),
        "role": role,
        "job": Supervised.of(spec, handle.roles).model_dump(mode="json"),
        "poll_interval": 0.2,
    }


@contextmanager
def triggerer(args: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", TRIGGERER, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


def tries(tmp_path: Path, role: str) -> int:
    path = tmp_path / "model" / f"{role}.tries"
    return int(path.read_text()) if path.exists() else 0


@pytest.mark.timeout(180)
def test_a_crash_looping_evaluator_keeps_its_budget_across_a_triggerer_restart(
    tmp_path: Path,
) -> None:
    handle = launch(tmp_path, {"evaluator": 1}, crash_loop="evaluator-0")
    run_dir = Path(handle.job_id)
    launcher = LocalLauncher(tmp_path / "runs")
    try:
        with triggerer(trigger_args(tmp_path, handle, "chief-0")):
            wait_for(lambda: tries(tmp_path, "evaluator-0") == 2, 60, "the first restart")
        # That triggerer is gone; another one takes the trigger over from its arguments.
        record = read_record(run_dir)
        assert record is not None and record.role_restarts == {"evaluator-0": 1}
        with triggerer(trigger_args(tmp_path, handle, "chief-0")) as second:
            out, _ = second.communicate(timeout=90)
        (event,) = [line for line in out.splitlines() if line.startswith("event: ")]
        assert json.loads(event.removeprefix("event: ")) == {
            "log_offset": len(role_log(run_dir, "chief-0").encode())
        }
        record = read_record(run_dir)
        assert record is not None and record.outcome is not None
        assert (record.outcome.role, record.outcome.reason) == (
            "evaluator-0",
            "evaluator-0 ended: killed by SIGKILL (exit code 137); all 2 restarts used "
            "(restart_policy.max_role_restarts: 2)",
        )
        assert tries(tmp_path, "evaluator-0") == 3  # 1 + 2 restarts, across both triggerers
        assert launcher.statuses(handle)["chief-0"].detail == "stopped"  # with the job
    finally:
        launcher.stop(handle)
    assert_no_process_left(run_dir)


@pytest.mark.timeout(180)
def test_a_chief_crash_seen_by_every_watch_restarts_the_gang_exactly_once(
    tmp_path: Path,
) -> None:
    cluster = {"worker": 2, "ps": 1, "evaluator": 1}
    handle = launch(tmp_path, cluster)
    run_dir = Path(handle.job_id)
    launcher = LocalLauncher(tmp_path / "runs")
    try:
        wait_for(lambda: all(tries(tmp_path, role) == 1 for role in handle.roles), 60, "roles")
        with (
            triggerer(trigger_args(tmp_path, handle, "chief-0")),
            triggerer(trigger_args(tmp_path, handle, "ps-0")),
            triggerer(trigger_args(tmp_path, handle, "worker-1")),
            triggerer(trigger_args(tmp_path, handle, "evaluator-0")),
        ):
            wait_for(lambda: (run_dir / "supervision.lock").exists(), 30, "the watches to poll")
            kill_role(run_dir, "chief-0")
            wait_for(
                lambda: (
                    all(tries(tmp_path, role) == 2 for role in handle.roles)
                    and all(
                        s.state is RoleState.RUNNING for s in launcher.statuses(handle).values()
                    )
                ),
                60,
                "every role to run again",
            )
            time.sleep(2)  # the watches go on polling: none restarts the gang again
        record = read_record(run_dir)
        assert record is not None
        assert (record.epoch, record.job_restarts, record.outcome) == (1, 1, None)
        assert {role: tries(tmp_path, role) for role in handle.roles} == dict.fromkeys(
            handle.roles, 2
        )
        for role in handle.roles:  # one relaunch marker each: one restart of the gang
            assert len(attempts(role_log(run_dir, role), role)) == 2, role
    finally:
        launcher.stop(handle)
    assert_no_process_left(run_dir)


@pytest.mark.timeout(240)
def test_tfdist_run_resumed_after_a_kill_keeps_the_launchs_counts(tmp_path: Path) -> None:
    """`tfdist run` is killed after the crash-looping evaluator's first restart; `tfdist run
    --resume` takes the launch over (every role restarted, not counted) and fails the job once
    the recorded budget is spent: 2 restarts in all, not 2 more."""
    spec = {
        "name": "resumed",
        "trainer": {
            "command": [sys.executable, "-c", ROLE_PROGRAM],
            "env": {"CRASH_LOOP": "evaluator-0"},
        },
        "cluster": {"evaluator": 1},
        "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 1},
        "train_spec": {"max_steps": 1},
        "model_dir": str(tmp_path / "model"),
    }
    first = subprocess.Popen(
        tfdist_command(spec, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: tries(tmp_path, "evaluator-0") == 2, 60, "the evaluator's first restart")
    finally:
        first.kill()  # as the OOM killer or a lost terminal would
        first.wait(timeout=30)
    run_dir = latest_run_dir(tmp_path, "resumed")
    wait_for(lambda: not processes_of(run_dir), 30, "the roles to stop with their launcher")
    record = read_record(run_dir)
    assert record is not None and record.role_restarts == {"evaluator-0": 1}

    resumed = run_tfdist(spec, tmp_path, "--resume", timeout=120)

    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert (
        f"tfdist: resuming the launch: restarting every role from the last checkpoint "
        f"(not counted) ({run_dir})" in resumed.stdout
    )
    assert (
        "tfdist: job resumed failed: evaluator-0 ended: killed by SIGKILL (exit code 137); all 2 "
        "restarts used (restart_policy.max_role_restarts: 2)"
    ) in resumed.stderr
    assert run_dirs(tmp_path, "resumed") == [run_dir]  # no second launch
    assert tries(tmp_path, "evaluator-0") == 4  # 2 counted restarts and the take-over
    assert_no_process_left(run_dir)
