"""Bad input: each case fails with an error naming what is wrong and the fix, and starts no role
(or, for what only a running role can find, fails fast naming the role).

Spec errors and `TF_CONFIG` errors of `tfdist plan/run/tf-config` are in `test_cli.py`; a
missing bucket or permission on gs:// in `test_gcs_storage.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from jobtools import digits_job, role_log, run_dirs, run_tfdist

from tfdist.backend import LaunchError
from tfdist.launch.local import LocalLauncher, free_ports
from tfdist.plan import plan
from tfdist.records import EvalRecord, eval_record_name
from tfdist.spec import parse_spec

pytestmark = pytest.mark.integration


def sleeping_job(name: str, model_dir: Path, *marker: str, **trainer: Any) -> dict[str, Any]:
    """Roles that only wait; `marker` (extra argv) finds them among all processes."""
    command = ["python", "-c", "import time; time.sleep(600)", *marker]
    return {
        "name": name,
        "trainer": {"command": command, **trainer},
        "cluster": {"worker": 2},
        "train_spec": {"max_steps": 1},
        "model_dir": str(model_dir),
    }


def processes_with(marker: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if marker in cmdline:
            found.append(" ".join(cmdline))
    return found


# -- refused before any role starts ---------------------------------------------------------


@pytest.mark.timeout(60)
def test_launch_task_refuses_a_bad_override_before_launching(tmp_path: Path) -> None:
    from tfdist_airflow.refusals import InputRefused
    from tfdist_airflow.roles import LaunchRolesOperator

    launch = LaunchRolesOperator(
        task_id="launch",
        job=sleeping_job("badspec", tmp_path / "m"),
        backend={"kind": "local", "run_root": str(tmp_path / "runs")},
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
        overrides={"train_spec.max_steps": "0", "cluster.chief": 2},
    )
    context: Any = {"dag": SimpleNamespace(dag_id="bad"), "run_id": "manual__1"}

    with pytest.raises(InputRefused) as refused:
        launch.execute(context)

    assert refused.value.code == 2
    assert refused.value.reason == (
        "invalid job spec:\n"
        "  cluster.chief: a cluster has exactly one chief, got 2; set `chief: 1`\n"
        "  train_spec.max_steps: Input should be greater than 0"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(60)
def test_role_with_an_invalid_tf_config_exits_before_training(tmp_path: Path) -> None:
    spec = parse_spec(
        digits_job("badtf", tmp_path / "model", str(tmp_path / "data"), {}, max_steps=40)
    )
    tf_config = {"cluster": {"chief": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
    env = {**os.environ, "TFDIST_JOB": spec.model_dump_json(), "TF_CONFIG": json.dumps(tf_config)}

    result = subprocess.run(
        [sys.executable, "-m", "tfdist.runtime"], env=env, capture_output=True, text=True
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("invalid TF_CONFIG: worker is not a valid task_type in the")
    assert not (tmp_path / "model").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        pytest.param(
            {"entrypoint": "tfdist.examples.digitz"},
            "tfdist: trainer.entrypoint: no module named 'tfdist.examples.digitz' for ",
            id="unknown-entrypoint",
        ),
        pytest.param(
            {"entrypoint": "nowhere.trainer"},
            "tfdist: trainer.entrypoint: no module named 'nowhere.trainer' for ",
            id="unknown-package",
        ),
        pytest.param(
            {"command": ["no-such-trainer", "--flag"]},
            "tfdist: trainer.command: cannot run 'no-such-trainer' from ",
            id="unknown-program",
        ),
    ],
)
def test_unknown_trainer_is_refused_before_launching(
    tmp_path: Path, trainer: dict[str, Any], message: str
) -> None:
    spec = digits_job("unknown", tmp_path / "model", "data", {"worker": 1}, max_steps=40)
    spec["trainer"] = trainer

    result = run_tfdist(spec, tmp_path, timeout=50)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dirs(tmp_path, "unknown")


# The trainer contract's functions, as a module's source must define them to be launched.
TRAINER_STUB = "".join(
    f"def {name}(*args):\n    raise NotImplementedError\n"
    for name in ("build_model", "loss_fn", "train_input_fn", "eval_input_fn")
)


@pytest.mark.timeout(60)
def test_entrypoint_is_looked_up_with_the_trainer_env(tmp_path: Path) -> None:
    """The check runs where the roles would: trainer.env's PYTHONPATH counts."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_trainer.py").write_text(TRAINER_STUB)
    spec = parse_spec(sleeping_job("found", tmp_path / "model"))
    found = spec.with_overrides(
        {"trainer": {"entrypoint": "my_trainer", "env": {"PYTHONPATH": str(tmp_path / "mine")}}}
    )
    launcher = LocalLauncher(tmp_path / "runs")
    handle = launcher.launch(plan(found, launcher.addresses(found)))
    launcher.stop(handle)

    missing = found.with_overrides({"trainer.env": {}})
    with pytest.raises(LaunchError, match="no module named 'my_trainer'"):
        launcher.launch(plan(missing, launcher.addresses(missing)))


@pytest.mark.timeout(60)
def test_a_port_already_taken_is_refused_before_launching(tmp_path: Path) -> None:
    spec = parse_spec(sleeping_job("port", tmp_path / "model"))
    launcher = LocalLauncher(tmp_path / "runs")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = free_ports(2)
        addresses = {
            "chief": [f"127.0.0.1:{free[0]}"],
            "worker": [f"127.0.0.1:{free[1]}", f"127.0.0.1:{port}"],
        }

        with pytest.raises(LaunchError) as refused:
            launcher.launch(plan(spec, addresses))

    assert str(refused.value) == (
        f"worker-1: port 127.0.0.1:{port} is already in use by another process; plan the job "
        "again to pick free ports"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(90)
def test_a_role_that_cannot_bind_its_port_says_so(tmp_path: Path) -> None:
    """Taken between the launcher's check and the role's start: the role names the address."""
    spec = parse_spec(
        digits_job("bind", tmp_path / "model", str(tmp_path / "data"), {}, max_steps=40)
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (worker,) = free_ports(1)
        cluster = {"chief": [f"127.0.0.1:{port}"], "worker": [f"127.0.0.1:{worker}"]}
        tf_config = {"cluster": cluster, "task": {"type": "chief", "index": 0}}
        env = {
            **os.environ,
            "TFDIST_JOB": spec.model_dump_json(),
            "TF_CONFIG": json.dumps(tf_config),
        }

        result = subprocess.run(
            [sys.executable, "-m", "tfdist.runtime"],
            env=env,
            capture_output=True,
            text=True,
            timeout=80,
        )

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"chief-0 ERROR tfdist.runtime: chief-0 cannot listen on 127.0.0.1:{port}, its "
        "TF_CONFIG address: the port is in use by another process" in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


# -- a model directory that cannot be written, a run directory on a full disk ---------------


def in_mount_namespace(
    mount_options: str, mountpoint: Path, command: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run `command` in a private mount namespace with a tmpfs (`mount_options`) at
    `mountpoint`: a real read-only or full filesystem, visible to nothing else."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o "$1" tfdist-test "$2" && shift 2 && exec "$@"'
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    return subprocess.run(
        [*unshare, mount_options, str(mountpoint), *command],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture(scope="module")
def mount_namespaces(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip where this kernel or sandbox allows no unprivileged mount namespace."""
    probe = tmp_path_factory.mktemp("probe")
    if shutil.which("unshare") is None:
        pytest.skip("no `unshare` command")
    result = in_mount_namespace("size=4k", probe / "mnt", ["true"])
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace: {result.stderr.strip()}")


def tfdist_run_command(spec: dict[str, Any], tmp_path: Path, run_root: Path) -> list[str]:
    spec_file = tmp_path / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(spec))
    return [sys.executable, "-m", "tfdist.cli", "run", str(spec_file), "--run-root", str(run_root)]


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("mount_namespaces")
def test_a_read_only_model_dir_is_refused_before_launching(tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    spec = sleeping_job("readonly", read_only / "model")

    result = in_mount_namespace(
        "ro,size=64k", read_only, tfdist_run_command(spec, tmp_path, tmp_path / "runs")
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"tfdist: cannot create model_dir {read_only / 'model'} as user "
    )
    assert "Read-only file system; choose a writable location" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("mount_namespaces")
def test_a_full_run_directory_fails_the_launch_and_stops_what_it_started(tmp_path: Path) -> None:
    """24 KiB, six pages: the handle and the three launch records fit, then the process
    records of the first two roles; the third role's record no longer does."""
    marker = f"tfdist-full-disk-{uuid.uuid4().hex}"
    full = tmp_path / "full"
    spec = sleeping_job("fulldisk", tmp_path / "model", marker)

    result = in_mount_namespace("size=24k", full, tfdist_run_command(spec, tmp_path, full))

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"tfdist: cannot launch fulldisk in {full}/fulldisk-")
    assert result.stderr.endswith(
        ": No space left on device; stopped chief-0, worker-0 again. Free space there or "
        "choose another run root (`tfdist run --run-root`, TFDIST_RUN_ROOT)\n"
    )
    assert processes_with(marker) == []


# -- found only by a running role: fails fast, naming the role ------------------------------


@pytest.mark.timeout(90)
def test_a_trainer_that_crashes_at_import_fails_fast_naming_the_role(tmp_path: Path) -> None:
    """A chief alone: with more roles each would crash the same way, and which of them is
    seen first depends on the machine's load."""
    (tmp_path / "trainers").mkdir()
    (tmp_path / "trainers" / "broken_trainer.py").write_text(
        "import json\nSETTINGS = json.loads('{not json')\n" + TRAINER_STUB
    )
    spec = digits_job("broken", tmp_path / "model", "data", {}, max_steps=40)
    spec["trainer"] = {
        "entrypoint": "broken_trainer",
        "env": {"PYTHONPATH": str(tmp_path / "trainers")},
    }

    result = run_tfdist(spec, tmp_path, timeout=80)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "tfdist: job broken failed: chief-0 failed with exit code 1" in result.stderr
    (run_dir,) = run_dirs(tmp_path, "broken")
    log = role_log(run_dir, "chief-0")
    assert "chief-0 ERROR tfdist.runtime: chief-0: importing trainer.entrypoint " in log
    assert "'broken_trainer' failed" in log
    assert "Traceback" in log and "json.decoder.JSONDecodeError" in log
    assert "[chief-0] json.decoder.JSONDecodeError" in result.stdout


@pytest.mark.timeout(60)
def test_a_threshold_on_a_metric_the_evaluator_never_writes(tmp_path: Path) -> None:
    """The gate task in a hand-made task context, on the record the evaluator left: the
    metric is named, with what the evaluator did write, and no blessing is written."""
    from tfdist_airflow.gate import BlessingGateOperator
    from tfdist_airflow.refusals import InputRefused

    model_dir = tmp_path / "model"
    spec = parse_spec(digits_job("gate", model_dir, str(tmp_path / "data"), {}, max_steps=40))
    record = EvalRecord(
        global_step=40,
        metrics={"accuracy": 0.93, "loss": 0.21},
        checkpoint_path=str(model_dir / "ckpt-40"),
        timestamp=0.0,
        eval_steps=2,
    )
    path = Path(eval_record_name(str(model_dir / "eval"), 40))
    path.parent.mkdir(parents=True)
    path.write_text(record.model_dump_json())
    handle = {"backend": "local", "job_id": str(tmp_path), "launch_id": "1", "roles": []}
    pushed = {"spec": spec.model_dump(mode="json"), "handle": handle}
    ti = SimpleNamespace(xcom_pull=lambda task_ids, key: pushed)
    context: Any = {"ti": ti}
    gate = BlessingGateOperator(
        task_id="gate",
        launch_task_id="launch",
        thresholds={"auc": {"min": 0.9}},
        serving_base=str(tmp_path / "serving"),
        model_name="digits",
    )

    with pytest.raises(InputRefused) as refused:
        gate.execute(context)

    assert refused.value.reason == (
        "gate thresholds name auc, which the evaluator did not write; it wrote: accuracy, "
        "loss. Fix the metric name, or add the metric to the trainer's eval_metrics"
    )
    assert not (model_dir / "blessing").exists()
