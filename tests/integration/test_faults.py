"""Faults injected into real jobs: a role's process is `kill -9`ed at a chosen moment.

What must hold: a job whose worker, chief, ps or evaluator dies either finishes at exactly
`max_steps` with the final checkpoint evaluated, or fails naming the role; it never hangs, and
no role process is left behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jobtools import (
    assert_no_process_left,
    attempts,
    checkpoint_steps,
    digits_job,
    eval_record,
    exit_records,
    kill_role,
    latest_run_dir,
    role_log,
    run_dirs,
    tfdist_command,
    wait_for,
)

from tfdist.backend import JobHandle, RoleState
from tfdist.launch.local import LocalLauncher

pytestmark = pytest.mark.integration

SAVED = re.compile(r"saved checkpoint for step (\d+)")
RESUMED = re.compile(r"training from step (\d+) to (\d+)")


def start_tfdist(
    spec: dict[str, Any], tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """`tfdist run` in the background, its output (which can be long) going to a file."""
    out = tmp_path / f"{spec['name']}.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            tfdist_command(spec, tmp_path, *args), stdout=sink, stderr=subprocess.STDOUT
        )
    wait_for(lambda: run_dirs(tmp_path, spec["name"]), 60, "the launch")
    return process, out


def last_saved(log: str) -> int:
    steps = SAVED.findall(log)
    assert steps, "no checkpoint saved in:\n" + log[-2000:]
    return int(steps[-1])


def resumed_from(log: str) -> int:
    match = RESUMED.search(log)
    assert match, "the chief did not start training in:\n" + log[-2000:]
    return int(match.group(1))


def assert_each_restart_resumed_the_last_checkpoint(run_dir: Path, restarts: int) -> list[int]:
    """Every attempt of the chief after the first restored the last checkpoint of the one
    before: at most the steps since that checkpoint were lost. Returns the resumed steps."""
    chief = attempts(role_log(run_dir, "chief-0"), "chief-0")
    assert len(chief) == restarts + 1
    resumed = []
    for before, after in pairwise(chief):
        step = last_saved(before)
        assert resumed_from(after) == step
        assert f"(step {step})" in after  # "restored .../ckpt-<step> (step <step>)"
        resumed.append(step)
    return resumed


@pytest.mark.timeout(330)
def test_all_reduce_job_restarts_from_the_latest_checkpoint_when_a_worker_or_the_chief_dies(
    tmp_path: Path, digits_data: str
) -> None:
    """`tfdist run --restarts 2`: the worker dies, then (after the restart) the chief dies;
    each time every role is restarted and training resumes from the latest checkpoint."""
    model_dir = tmp_path / "model"
    checkpoint_20 = (model_dir / "ckpt-20.index").exists
    cluster = {"worker": 1, "evaluator": 1}
    spec = digits_job("allreduce", model_dir, digits_data, cluster, max_steps=300)
    process, out = start_tfdist(spec, tmp_path, "--restarts", "2")
    try:
        run_dir = latest_run_dir(tmp_path, "allreduce")
        wait_for(checkpoint_20, 180, "checkpoint 20", interval=0.05)
        kill_role(run_dir, "worker-0")
        wait_for(lambda: "(restart 1 of 2)" in out.read_text(), 60, "the first restart")

        def saved_again() -> bool:
            chief = attempts(role_log(run_dir, "chief-0"), "chief-0")
            return len(chief) == 2 and "saved checkpoint for step" in chief[1]

        wait_for(saved_again, 180, "a checkpoint after the restart", interval=0.05)
        kill_role(run_dir, "chief-0")
        process.wait(timeout=240)
    finally:
        process.kill()
    output = out.read_text()

    assert process.returncode == 0, output[-4000:]
    killed = "ended: killed by SIGKILL (exit code 137); restarting every role from the last"
    assert f"tfdist: worker-0 {killed} checkpoint (restart 1 of 2)" in output
    assert f"tfdist: chief-0 {killed} checkpoint (restart 2 of 2)" in output
    first, second = assert_each_restart_resumed_the_last_checkpoint(run_dir, restarts=2)
    assert 20 <= first < second < 300
    assert max(checkpoint_steps(model_dir)) == 300
    assert eval_record(model_dir, 300)["global_step"] == 300
    assert_no_process_left(run_dir)


@pytest.mark.timeout(330)
def test_parameter_server_job_survives_a_worker_and_the_evaluator_dying(
    tmp_path: Path, digits_data: str
) -> None:
    """`tfdist run`, no flag: the coordinator reruns a dead worker's steps on the other worker;
    the worker's and the evaluator's TF processes (not their supervisors) are killed, and each
    is started again alone. The job still ends at exactly max_steps, and the new evaluator
    evaluates only what has no record yet."""
    model_dir = tmp_path / "model"
    cluster = {"worker": 2, "ps": 1, "evaluator": 1}
    spec = digits_job("psjob", model_dir, digits_data, cluster, max_steps=400)
    process, out = start_tfdist(spec, tmp_path)
    eval_dir = model_dir / "eval"
    try:
        run_dir = latest_run_dir(tmp_path, "psjob")
        wait_for((model_dir / "ckpt-20.index").exists, 180, "checkpoint 20", interval=0.05)
        kill_role(run_dir, "worker-1")
        wait_for(lambda: "restarting worker-1 alone" in out.read_text(), 60, "worker-1 again")

        def evaluated() -> bool:  # its record is written first, then this line
            return "eval at step" in role_log(run_dir, "evaluator-0")

        wait_for(evaluated, 180, "a first evaluation", 0.05)
        first = sorted(eval_dir.glob("record-*.json"))[0]
        first_record = first.read_text()
        kill_role(run_dir, "evaluator-0")
        process.wait(timeout=240)
    finally:
        process.kill()
    output = out.read_text()

    assert process.returncode == 0, output[-4000:]
    killed = "ended: killed by SIGKILL (exit code 137); restarting"
    assert f"tfdist: worker-1 {killed} worker-1 alone (restart 1 of 3)" in output
    assert f"tfdist: evaluator-0 {killed} evaluator-0 alone (restart 1 of 3)" in output
    records = exit_records(run_dir)
    assert records["chief-0"]["exit_code"] == 0
    assert records["evaluator-0"]["exit_code"] == 0
    steps = checkpoint_steps(model_dir)
    assert max(steps) == 400
    assert all(step % 20 == 0 for step in steps), steps  # no step counted twice
    assert eval_record(model_dir, 400)["global_step"] == 400
    first_step = json.loads(first_record)["global_step"]
    assert first_step < 400
    assert first.read_text() == first_record  # not evaluated again
    before, after = attempts(role_log(run_dir, "evaluator-0"), "evaluator-0")
    assert f"eval at step {first_step} over" in before
    assert f"eval at step {first_step} over" not in after
    assert "eval at step 400 over" in after
    assert len(attempts(role_log(run_dir, "worker-1"), "worker-1")) == 2
    assert len(attempts(role_log(run_dir, "chief-0"), "chief-0")) == 1  # never restarted
    assert_no_process_left(run_dir)


@pytest.mark.timeout(330)
def test_a_dead_parameter_server_restarts_the_whole_job(tmp_path: Path, digits_data: str) -> None:
    """The coordinator cannot go on without its ps (its next step fails with
    UnavailableError); `--restarts` starts every role again from the latest checkpoint."""
    model_dir = tmp_path / "model"
    spec = digits_job("psdeath", model_dir, digits_data, {"worker": 1, "ps": 1}, max_steps=300)
    process, out = start_tfdist(spec, tmp_path, "--restarts", "1")
    try:
        run_dir = latest_run_dir(tmp_path, "psdeath")
        wait_for((model_dir / "ckpt-20.index").exists, 180, "checkpoint 20", interval=0.05)
        kill_role(run_dir, "ps-0")
        process.wait(timeout=240)
    finally:
        process.kill()
    output = out.read_text()

    assert process.returncode == 0, output[-4000:]
    assert (
        "tfdist: ps-0 ended: killed by SIGKILL (exit code 137); restarting every role from the "
        "last checkpoint (restart 1 of 1)"
    ) in output
    (resumed,) = assert_each_restart_resumed_the_last_checkpoint(run_dir, restarts=1)
    assert resumed >= 20
    assert max(checkpoint_steps(model_dir)) == 300
    assert_no_process_left(run_dir)


SLEEPS = "import time; print('started', flush=True); time.sleep(600)"


def sleeping_job(name: str, tmp_path: Path, cluster: dict[str, int]) -> dict[str, Any]:
    """Roles that only wait (no TensorFlow: quick to start and stop)."""
    return {
        "name": name,
        "trainer": {"command": ["python", "-c", SLEEPS], "env": {"API_TOKEN": "s3cr3t-token"}},
        "cluster": cluster,
        "train_spec": {"max_steps": 1},
        "model_dir": str(tmp_path / "model"),
    }


def started(run_dir: Path, *roles: str) -> bool:
    logs = [run_dir / f"{role}.log" for role in roles]
    return all(log.exists() and "started" in log.read_text() for log in logs)


@pytest.mark.timeout(90)
def test_without_restarts_a_dead_ps_fails_the_job_at_once_naming_it(tmp_path: Path) -> None:
    spec = sleeping_job("psgone", tmp_path, {"worker": 1, "ps": 1})
    process = subprocess.Popen(
        tfdist_command(spec, tmp_path, "--restarts", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: run_dirs(tmp_path, "psgone"), 30, "the launch")
        run_dir = latest_run_dir(tmp_path, "psgone")
        wait_for(lambda: started(run_dir, "ps-0"), 30, "ps-0")
        kill_role(run_dir, "ps-0")
        _, stderr = process.communicate(timeout=45)
    finally:
        process.kill()

    assert process.returncode == 1, stderr
    assert (
        "tfdist: job psgone failed: ps-0 ended: killed by SIGKILL (exit code 137); no restart "
        "allowed (restart_policy.max_job_restarts: 0)"
    ) in stderr
    assert_no_process_left(run_dir)


@pytest.mark.timeout(120)
def test_killed_watch_tasks_and_the_teardown_leave_no_role_running(tmp_path: Path) -> None:
    """The operators' own entry points with a hand-made context (only the fields they read):
    a killed deferred watch task (the trigger's `on_kill`), a killed running watch task
    (`WatchRoleOperator.on_kill`) and the teardown each stop what they own; the teardown then
    fails, naming what did not finish."""
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from tfdist_airflow.roles import LaunchRolesOperator, StopRolesOperator, WatchRoleOperator

    backend = {"kind": "local", "run_root": str(tmp_path / "runs")}
    spec = sleeping_job("killed", tmp_path, {"worker": 1, "evaluator": 1})
    launch = LaunchRolesOperator(
        task_id="launch",
        job=spec,
        backend=backend,
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
    )
    xcoms: dict[tuple[str, str], Any] = {}  # what the launch task pushed, as XCom stores it

    def stored(value: Any) -> Any:
        return json.loads(json.dumps(value))

    ti = SimpleNamespace(
        xcom_push=lambda key, value: xcoms.__setitem__(
            ("launch", key), json.loads(json.dumps(value))
        ),
        xcom_pull=lambda task_ids, key="return_value": xcoms.get((task_ids, key)),
        try_number=1,
    )
    context: Any = {"dag": SimpleNamespace(dag_id="faults"), "run_id": "manual__1", "ti": ti}
    launch.execute(context)
    handle = JobHandle.model_validate(xcoms["launch", "launched"]["handle"])
    launcher = LocalLauncher(tmp_path / "runs")
    run_dir = Path(handle.job_id)
    wait_for(lambda: started(run_dir, *handle.roles), 30, "every role")

    def watch(role: str) -> tuple[WatchRoleOperator, Any]:
        operator = WatchRoleOperator(
            task_id="watch", role=role, launch_task_id="launch", backend=backend
        )
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context)
        return operator, deferred.value.trigger

    _, trigger = watch("evaluator-0")
    asyncio.run(trigger.on_kill())  # what the triggerer calls when the user kills the task
    assert launcher.statuses(handle)["evaluator-0"].state is RoleState.FAILED
    assert launcher.statuses(handle)["worker-0"].state is RoleState.RUNNING

    operator, _ = watch("worker-0")
    operator.on_kill()
    assert launcher.statuses(handle)["worker-0"].state is RoleState.FAILED
    assert launcher.statuses(handle)["chief-0"].state is RoleState.RUNNING

    stop = StopRolesOperator(
        task_id="stop", backend=backend, group_id="train", launch_task_id="launch"
    )
    with pytest.raises(AirflowFailException) as failed:  # fails the run: training did not finish
        stop.execute(context)
    assert str(failed.value) == (
        "the training step did not finish: worker-0 (exit code 143, stopped), evaluator-0 "
        "(exit code 143, stopped) failed; chief-0 still running, stopped now"
    )
    assert {r["reason"] for r in exit_records(run_dir).values()} == {"stopped"}
    assert_no_process_left(run_dir)


@pytest.mark.timeout(120)
def test_a_launch_task_never_leaves_two_gangs_and_its_kill_stops_its_roles(tmp_path: Path) -> None:
    """A retried launch task reattaches to the launch of its run that still runs; once that
    one ended, a retry starts a new one; a launch task killed (its `on_kill`) stops what it
    started."""
    from tfdist_airflow.roles import LaunchRolesOperator

    backend = {"kind": "local", "run_root": str(tmp_path / "runs")}
    launch = LaunchRolesOperator(
        task_id="launch",
        job=sleeping_job("relaunched", tmp_path, {"worker": 1}),
        backend=backend,
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
    )
    pushes: dict[str, Any] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushes.__setitem__(key, value))
    context: Any = {"dag": SimpleNamespace(dag_id="faults"), "run_id": "manual__1", "ti": ti}
    launcher = LocalLauncher(tmp_path / "runs")

    def launched() -> JobHandle:
        launch.execute(context)
        return JobHandle.model_validate(pushes["launched"]["handle"])

    first = launched()
    wait_for(lambda: started(Path(first.job_id), *first.roles), 30, "the first launch")
    assert launched() == first  # the task's retry, while the roles run
    assert {launcher.statuses(first)[r].state for r in first.roles} == {RoleState.RUNNING}

    launcher.stop(first)  # as the teardown of a run marked failed
    second = launched()  # a retry once they ended

    assert second.launch_id != first.launch_id
    assert {r["reason"] for r in exit_records(Path(first.job_id)).values()} == {"stopped"}
    assert {launcher.statuses(second)[r].state for r in second.roles} == {RoleState.RUNNING}

    launch.on_kill()
    assert {launcher.statuses(second)[r].state for r in second.roles} == {RoleState.FAILED}
    for handle in (first, second):
        assert_no_process_left(Path(handle.job_id))
