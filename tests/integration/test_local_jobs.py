"""Whole jobs on the local backend: real role processes talking gRPC on 127.0.0.1, on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jobtools import (
    HERE,
    assert_no_process_left,
    checkpoint_step,
    checkpoint_steps,
    digits_job,
    eval_record,
    exit_records,
    latest_run_dir,
    run_tfdist,
    tfdist_command,
    wait_for,
)

from tfdist.backend import RoleState
from tfdist.launch.local import LocalLauncher
from tfdist.lifecycle import PREEMPTED_EXIT_CODE
from tfdist.plan import plan
from tfdist.records import PROGRESS_DIR, RoleProgress, progress_name
from tfdist.spec import parse_spec

pytestmark = pytest.mark.integration


def assert_trained_and_evaluated(model_dir: Path, max_steps: int) -> None:
    assert checkpoint_step(model_dir) == max_steps
    assert max(checkpoint_steps(model_dir)) == max_steps
    record = eval_record(model_dir, max_steps)
    assert record["global_step"] == max_steps
    assert set(record["metrics"]) == {"loss", "accuracy"}
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    assert list((model_dir / "eval").glob("events.out.tfevents.*")), "no TensorBoard events"


def assert_nothing_left_in(env: dict[str, str]) -> None:
    """Roles' temporary files (a worker's checkpoint copies, AutoGraph's modules) are gone."""
    leftovers = sorted(path.name for path in Path(env["TMPDIR"]).iterdir())
    assert not leftovers, f"left in TMPDIR: {leftovers}"


def assert_all_exited_by_themselves(run_dir: Path, roles: list[str]) -> None:
    records = exit_records(run_dir)
    assert sorted(records) == sorted(roles)
    for role, record in records.items():
        assert (record["exit_code"], record["reason"]) == (0, "exited"), (role, record)


@pytest.mark.timeout(240)
def test_all_reduce_job(tmp_path: Path, digits_data: str, scratch_tmpdir: dict[str, str]) -> None:
    model_dir = tmp_path / "model"
    spec = digits_job(
        "allreduce", model_dir, digits_data, {"worker": 1, "evaluator": 1}, max_steps=60
    )

    result = run_tfdist(spec, tmp_path, env=scratch_tmpdir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert_trained_and_evaluated(model_dir, 60)
    run_dir = latest_run_dir(tmp_path, "allreduce")
    assert_all_exited_by_themselves(run_dir, ["chief-0", "worker-0", "evaluator-0"])
    assert "[worker-0]" in result.stdout and "[evaluator-0]" in result.stdout
    assert_nothing_left_in(scratch_tmpdir)
    assert_no_process_left(run_dir)
    # Each training role reports its own steps; the chief writes the training summaries.
    for role in ("chief-0", "worker-0"):
        assert f"{role} INFO tfdist.train: step 60/60 loss " in result.stdout
        done = progress(model_dir, role)
        assert (done.unit, done.count, done.global_step, done.reported_by) == (
            "steps",
            60,
            60,
            role,
        )
        assert done.rate > 0 and done.loss is not None
    assert sorted(progress_files(model_dir)) == ["chief-0", "worker-0"]
    assert summaries(model_dir) == {
        "learning_rate": [20, 40, 60],
        "loss": [20, 40, 60],
        "steps_per_sec": [20, 40, 60],
    }


@pytest.mark.timeout(240)
def test_parameter_server_job(tmp_path: Path, digits_data: str) -> None:
    model_dir = tmp_path / "model"
    cluster = {"worker": 2, "ps": 1, "evaluator": 1}
    spec = digits_job("psjob", model_dir, digits_data, cluster, max_steps=60)

    result = run_tfdist(spec, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert_trained_and_evaluated(model_dir, 60)
    run_dir = latest_run_dir(tmp_path, "psjob")
    roles = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]
    assert_all_exited_by_themselves(run_dir, roles)
    assert "still running after the chief" not in result.stdout
    # The chief sends the servers nothing after its marker (they may be gone by then): it
    # removes no function there, nor registers one (as a first run of an op would).
    assert "Failed to remove function remotely" not in result.stdout, result.stdout
    assert "Failed to register function remotely" not in result.stdout, result.stdout
    assert_no_process_left(run_dir)
    # The chief counts which worker ran each step; each worker logs its own share.
    shares = {role: progress(model_dir, role) for role in ("worker-0", "worker-1")}
    assert sum(share.count for share in shares.values()) == 60
    for role, share in shares.items():
        assert (share.unit, share.global_step, share.reported_by) == ("closures", 60, "chief-0")
        assert f"{role} INFO tfdist.serve: step 60/60: ran {share.count} steps here (" in (
            result.stdout
        )
    assert "chief-0 INFO tfdist.train: steps run per worker: worker-0 " in result.stdout
    assert sorted(progress_files(model_dir)) == ["chief-0", "worker-0", "worker-1"]
    assert sorted(summaries(model_dir)) == ["learning_rate", "loss", "steps_per_sec"]


def progress(model_dir: Path, role: str) -> RoleProgress:
    return RoleProgress.model_validate_json(Path(progress_name(str(model_dir), role)).read_text())


def progress_files(model_dir: Path) -> list[str]:
    return [path.stem for path in (model_dir / PROGRESS_DIR).glob("*.json")]


def summaries(log_dir: Path) -> dict[str, list[int]]:
    """The steps of each TensorBoard scalar in `log_dir` (not its subdirectories)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [e.step for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}


@pytest.mark.timeout(300)
def test_rerun_resumes_from_the_latest_checkpoint(tmp_path: Path, digits_data: str) -> None:
    model_dir = tmp_path / "model"
    spec = digits_job("resume", model_dir, digits_data, {"evaluator": 1}, max_steps=40)

    first = run_tfdist(spec, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert checkpoint_step(model_dir) == 40

    again = run_tfdist(spec, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to train" in again.stdout
    assert checkpoint_steps(model_dir) == [20, 40]
    assert checkpoint_step(model_dir) == 40

    more = run_tfdist(spec, tmp_path, "--set", "train_spec.max_steps=80")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "training from step 40 to 80" in more.stdout
    assert checkpoint_steps(model_dir) == [20, 40, 60, 80]
    assert_trained_and_evaluated(model_dir, 80)
    for run_dir in (tmp_path / "runs").iterdir():
        assert_no_process_left(run_dir)


def run_runtime(spec: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m tfdist.runtime` in local mode: no TF_CONFIG."""
    from tfdist.spec import parse_spec

    environ = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environ |= {"TFDIST_JOB": parse_spec(spec).model_dump_json(), **env}
    return subprocess.run(
        [sys.executable, "-m", "tfdist.runtime"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.mark.timeout(180)
def test_local_mode_trains_then_evaluates(tmp_path: Path, digits_data: str) -> None:
    model_dir = tmp_path / "model"
    spec = digits_job("local", model_dir, digits_data, {"worker": 1}, max_steps=40)

    result = run_runtime(spec)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "local INFO tfdist.train: training from step 0 to 40" in result.stdout
    assert_trained_and_evaluated(model_dir, 40)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("crash_with", "exit_code", "output"),
    [
        ("error", 1, "RuntimeError: worker model is broken on purpose"),
        ("exit-3", 3, ""),
        ("interrupt", 130, ""),
    ],
)
def test_runtime_exit_status_tells_how_the_trainer_ended(
    tmp_path: Path, digits_data: str, crash_with: str, exit_code: int, output: str
) -> None:
    spec = digits_job("local", tmp_path / "model", digits_data, {}, max_steps=40)
    spec["trainer"] = {"entrypoint": "crashing_trainer"}

    result = run_runtime(spec, PYTHONPATH=str(HERE), CRASH_WITH=crash_with)

    assert result.returncode == exit_code, result.stdout + result.stderr
    assert output in result.stderr
    assert ("Traceback" in result.stderr) is (crash_with == "error")


@pytest.mark.timeout(180)
def test_command_trainer_runs_unchanged(tmp_path: Path) -> None:
    """A program that knows only TF_CONFIG and MODEL_DIR, named relative to where we run."""
    model_dir = tmp_path / "model"
    spec = {
        "name": "plain",
        "trainer": {"command": ["python", "plain_trainer.py"]},
        "cluster": {"worker": 1},
        "train_spec": {"max_steps": 5},
        "model_dir": str(model_dir),
    }

    result = run_tfdist(spec, tmp_path, cwd=HERE)

    assert result.returncode == 0, result.stdout + result.stderr
    outputs = {p.stem: json.loads(p.read_text()) for p in model_dir.glob("*.json")}
    assert sorted(outputs) == ["chief-0", "worker-0"]
    for name, output in outputs.items():
        assert output["replicas"] == 2
        assert f"{output['task']['type']}-{output['task']['index']}" == name
    assert outputs["chief-0"]["weight"] == outputs["worker-0"]["weight"] != 0.0
    assert_no_process_left(latest_run_dir(tmp_path, "plain"))


@pytest.mark.timeout(180)
def test_crashing_trainer_fails_the_job_and_stops_every_role(
    tmp_path: Path, digits_data: str
) -> None:
    spec = digits_job(
        "crash", tmp_path / "model", digits_data, {"worker": 1, "evaluator": 1}, max_steps=40
    )
    spec["trainer"] = {"entrypoint": "crashing_trainer", "env": {"PYTHONPATH": str(HERE)}}

    result = run_tfdist(spec, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed: worker-0 failed with exit code 1: a failure of the program" in result.stderr
    assert "[worker-0] RuntimeError: worker model is broken on purpose" in result.stdout
    assert "the last lines of worker-0's log:" in result.stderr
    assert "  RuntimeError: worker model is broken on purpose" in result.stderr
    run_dir = latest_run_dir(tmp_path, "crash")
    records = exit_records(run_dir)
    assert records["worker-0"]["exit_code"] == 1
    # Stopped, not ended by their own error: each took SIGTERM as a notice and ended preempted,
    # or was killed when the grace period ran out.
    for role in ("chief-0", "evaluator-0"):
        assert records[role]["reason"] == "stopped"
        assert records[role]["exit_code"] in (PREEMPTED_EXIT_CODE, 128 + signal.SIGKILL), role
    assert_no_process_left(run_dir)


def command_job(name: str, tmp_path: Path, code: str, cluster: dict[str, int]) -> dict[str, Any]:
    """A job whose every role runs `python -c CODE` (no TensorFlow: quick to start)."""
    return {
        "name": name,
        "trainer": {"command": ["python", "-c", code]},
        "cluster": cluster,
        "train_spec": {"max_steps": 1},
        "model_dir": str(tmp_path / "model"),
    }


WORKER_EXITS_3 = """
import json, os, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
print(task["type"], "started", flush=True)
if task["type"] == "worker":
    sys.exit(3)
time.sleep(300)
"""

SLEEPS = """
import time
print("started", flush=True)
time.sleep(300)
"""


@pytest.mark.timeout(60)
def test_command_exit_code_names_the_failing_role(tmp_path: Path) -> None:
    spec = command_job("exit3", tmp_path, WORKER_EXITS_3, {"worker": 2, "ps": 1})

    result = run_tfdist(spec, tmp_path, timeout=45)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed: worker-" in result.stderr
    assert "failed with exit code 3: a failure of the program itself" in result.stderr
    run_dir = latest_run_dir(tmp_path, "exit3")
    assert exit_records(run_dir)["chief-0"]["reason"] == "stopped"
    assert_no_process_left(run_dir)


WORKER_ENDS_FIRST = """
import json, os, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
time.sleep(0.5 if task["type"] == "worker" else 300)
"""


@pytest.mark.timeout(60)
def test_wait_for_exit_returns_when_a_role_ends(tmp_path: Path) -> None:
    """What lets `tfdist run` end right after its last role instead of at its next poll."""
    spec = parse_spec(command_job("ends", tmp_path, WORKER_ENDS_FIRST, {"worker": 1}))
    launcher = LocalLauncher(tmp_path / "runs")
    handle = launcher.launch(plan(spec, launcher.addresses(spec), python=sys.executable))
    try:
        started = time.monotonic()
        launcher.wait(handle, handle.roles, timeout=40)
        assert time.monotonic() - started < 30
        assert launcher.statuses(handle)["worker-0"].state is RoleState.SUCCEEDED

        started = time.monotonic()  # a role that ended since the caller looked: at once
        launcher.wait(handle, ["worker-0"], timeout=40)
        assert time.monotonic() - started < 30

        started = time.monotonic()  # no role ends: the whole timeout
        launcher.wait(handle, ["chief-0"], timeout=0.3)
        assert time.monotonic() - started >= 0.25
        assert launcher.statuses(handle)["chief-0"].state is RoleState.RUNNING
    finally:
        launcher.stop(handle)
    assert_no_process_left(Path(handle.job_id))


@pytest.mark.timeout(60)
def test_role_whose_supervisor_died_is_stopped(tmp_path: Path) -> None:
    spec = command_job("orphan", tmp_path, SLEEPS, {"worker": 1})
    process = subprocess.Popen(
        tfdist_command(spec, tmp_path, "--restarts", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: list((tmp_path / "runs").glob("orphan-*/worker-0.pid")), 20, "launch")
        run_dir = latest_run_dir(tmp_path, "orphan")
        wait_for(lambda: "started" in (run_dir / "worker-0.log").read_text(), 20, "worker-0")
        supervisor = json.loads((run_dir / "worker-0.pid").read_text())["pid"]
        os.kill(supervisor, signal.SIGKILL)  # the supervisor only: its role lives on

        stdout, stderr = process.communicate(timeout=40)
    finally:
        process.kill()

    assert process.returncode == 1, stdout + stderr
    assert (
        "failed: worker-0 ended without an exit code: the role's supervisor was killed; "
        "no restart allowed"
    ) in stderr
    assert_no_process_left(run_dir)


def start_forever_job(
    tmp_path: Path, digits_data: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], Path]:
    """`tfdist run` of an all-reduce job that trains until stopped, once both roles train."""
    spec = digits_job("forever", tmp_path / "model", digits_data, {"worker": 1})
    spec["train_spec"]["train_forever"] = True
    process = subprocess.Popen(
        tfdist_command(spec, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # As a terminal would start it: a test run started in the background (`cmd &`) has
        # SIGINT ignored, which its children inherit, and Ctrl-C would then do nothing.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: list((tmp_path / "runs").glob("forever-*/chief-0.log")), 30, "the launch")
    run_dir = latest_run_dir(tmp_path, "forever")

    def training() -> bool:
        return "saved checkpoint for step" in (run_dir / "chief-0.log").read_text()

    wait_for(training, 120, "the first checkpoint")
    return process, run_dir


@pytest.mark.timeout(180)
def test_ctrl_c_stops_every_role(
    tmp_path: Path, digits_data: str, scratch_tmpdir: dict[str, str]
) -> None:
    process, run_dir = start_forever_job(tmp_path, digits_data, scratch_tmpdir)
    try:
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        stopped_after = time.monotonic() - interrupted
    finally:
        process.kill()

    assert process.returncode == 130, stderr
    assert stopped_after < 10, f"took {stopped_after:.1f} s to stop"
    assert "interrupted" in stderr
    assert_no_process_left(run_dir)
    assert_nothing_left_in(scratch_tmpdir)


@pytest.mark.timeout(180)
def test_killed_launcher_leaves_no_role_behind(
    tmp_path: Path, digits_data: str, scratch_tmpdir: dict[str, str]
) -> None:
    process, run_dir = start_forever_job(tmp_path, digits_data, scratch_tmpdir)
    process.kill()
    try:  # checked before the killed launcher is reaped: it lingers as a zombie until then
        assert_no_process_left(run_dir, within=15)
    finally:
        process.communicate(timeout=10)
    assert {record["reason"] for record in exit_records(run_dir).values()} == {"launcher gone"}
    assert_nothing_left_in(scratch_tmpdir)
