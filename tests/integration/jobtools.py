"""Helpers for tests that run real role processes on 127.0.0.1: specs, runs, checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).parent
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def digits_job(
    name: str, model_dir: Path, data_dir: str, cluster: dict[str, int], **train: Any
) -> dict[str, Any]:
    """A small, fast digits job: checkpoints every 20 steps, a quick evaluator."""
    return {
        "name": name,
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": cluster,
        "train_spec": {"save_checkpoints_steps": 20, "log_step_count_steps": 20, **train},
        "eval_spec": {"steps": 2, "start_delay_secs": 0, "throttle_secs": 1},
        "model_dir": str(model_dir),
        "data_dir": data_dir,
    }


def tfdist_command(spec: dict[str, Any], tmp_path: Path, *args: str) -> list[str]:
    """`tfdist run SPEC --run-root RUN_ROOT ...` for a spec written to `tmp_path`."""
    spec_file = tmp_path / f"{spec['name']}-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec))
    return [
        sys.executable,
        "-m",
        "tfdist.cli",
        "run",
        str(spec_file),
        "--run-root",
        str(tmp_path / "runs"),
        *args,
    ]


def run_tfdist(
    spec: dict[str, Any], tmp_path: Path, *args: str, timeout: float = 180, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tfdist_command(spec, tmp_path, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def run_dirs(tmp_path: Path, name: str) -> list[Path]:
    """The run directories of job `name`, oldest first."""
    return sorted((tmp_path / "runs").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime_ns)


def latest_run_dir(tmp_path: Path, name: str) -> Path:
    dirs = run_dirs(tmp_path, name)
    assert dirs, f"no run directory for {name} under {tmp_path / 'runs'}"
    return dirs[-1]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def exit_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name.removesuffix(".exit"): json.loads(path.read_text())
        for path in run_dir.glob("*.exit")
    }


def processes_of(run_dir: Path) -> list[psutil.Process]:
    """Live processes started for this run: supervisors name the run dir, roles carry its id."""
    launch_id = run_dir.name.rsplit("-", 1)[-1]
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            named = str(run_dir) in " ".join(process.cmdline())
            if named or process.environ().get("TFDIST_LAUNCH_ID") == launch_id:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_no_process_left(run_dir: Path, within: float = 0.0) -> None:
    deadline = time.monotonic() + within
    while True:
        left = processes_of(run_dir)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    described = []
    for process in left:
        try:
            described.append(f"{process.pid}: {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    assert not described, "processes left behind:\n" + "\n".join(described)


def checkpoint_step(model_dir: Path) -> int:
    """The step of the latest checkpoint in `model_dir`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(model_dir))
    return int(reader.get_tensor(STEP_KEY))


def checkpoint_steps(model_dir: Path) -> list[int]:
    """Every checkpoint step on disk, from the `ckpt-<step>.index` files."""
    return sorted(int(p.name[5:-6]) for p in model_dir.glob("ckpt-*.index"))


def eval_record(model_dir: Path, step: int) -> dict[str, Any]:
    path = model_dir / "eval" / f"record-{step:012d}.json"
    assert path.exists(), f"no eval record for step {step}: {sorted(os.listdir(path.parent))}"
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def kill_role(run_dir: Path, role: str) -> int:
    """`kill -9` the role's own process (not its supervisor, which records the exit); its pid."""
    supervisor = psutil.Process(json.loads((run_dir / f"{role}.pid").read_text())["pid"])
    children = supervisor.children()
    assert children, f"{role} has no running process"
    children[0].kill()
    children[0].wait(timeout=10)
    return children[0].pid


def role_log(run_dir: Path, role: str) -> str:
    return (run_dir / f"{role}.log").read_text(errors="replace")


def attempts(log: str, role: str) -> list[str]:
    """A role's log split at each relaunch of the role."""
    return log.split(f"----- tfdist: starting {role} again -----")
