"""A table of bad inputs, each refused cleanly by `tfdist run` and by the launch task.

For every case: the exit status (2 for the CLI) or a failed launch task that was not retried,
one reason naming the field, no traceback, nothing written (the case's directory, holding the
model directory and the run root, is as it was) and no process left. RELIABILITY.md's
bad-input table lists the cases.

The CLI cases run `python -m tfdist.cli run` in a case directory; none starts TensorFlow. The
launch-task cases are the task groups of `dags/bad_input.py`, run once by `airflow dags test`
(Airflow's own task runner, in one process, on SQLite).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_home import AirflowHome

from tfdist.fingerprint import FINGERPRINT_FILE, spec_fingerprint
from tfdist.spec import parse_spec

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"
QUICK = ["python", "-c", "print('a role ran')"]
ACCEPTED = "use a local path such as /data/models, or gs://BUCKET/PREFIX"
CASE_ENV = "TFDIST_TABLE_CASE"


def base_spec() -> dict[str, Any]:
    """A job that would run in a second, with no TensorFlow, were it not refused."""
    return {
        "name": "refused",
        "trainer": {"command": QUICK},
        "cluster": {"worker": 1},
        "train_spec": {"max_steps": 5},
        "model_dir": "model",
    }


def another_trainers_model_dir(case_dir: Path) -> None:
    """`model` holds a checkpoint of another trainer, tagged with its fingerprint."""
    other = parse_spec({**base_spec(), "trainer": {"command": ["python", "other.py"]}})
    tag = case_dir / "model" / FINGERPRINT_FILE
    tag.parent.mkdir(parents=True)
    tag.write_text(spec_fingerprint(other).model_dump_json())
    (case_dir / "model" / "ckpt-5.index").write_text("")


@dataclass(frozen=True)
class Case:
    """`reason` is a fragment of the refusal that names the field."""

    spec: dict[str, Any] | None  # changes to `base_spec()`; None: no spec file
    reason: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    spec_text: str | bytes | None = None  # the spec file's content instead of `spec`
    prepare: Callable[[Path], None] | None = None


CLI_CASES: dict[str, Case] = {
    "model-dir-gs-no-bucket": Case({"model_dir": "gs://"}, "model_dir: 'gs://' names no bucket"),
    "model-dir-gs-one-slash": Case(
        {"model_dir": "gs:/bucket/x"}, "model_dir: 'gs:/bucket/x': starts like a URI (`gs:`)"
    ),
    "model-dir-gs-no-bucket-slash": Case(
        {"model_dir": "gs:///x"}, "model_dir: 'gs:///x' names no bucket"
    ),
    "model-dir-uppercase-scheme": Case(
        {"model_dir": "GS://bucket/x"},
        f"model_dir: 'GS://bucket/x': the scheme is written `gs://`, in lowercase; {ACCEPTED}",
    ),
    "model-dir-s3": Case(
        {"model_dir": "s3://bucket/x"},
        f"model_dir: 's3://bucket/x': s3:// storage is not supported; {ACCEPTED}",
    ),
    "model-dir-hdfs": Case(
        {"model_dir": "hdfs://nn/x"}, "model_dir: 'hdfs://nn/x': hdfs:// storage is not supported"
    ),
    "model-dir-bucket-uppercase": Case(
        {"model_dir": "gs://My_Bucket/x"},
        "model_dir: 'gs://My_Bucket/x' bucket name 'My_Bucket' has uppercase letters",
    ),
    "model-dir-bucket-bang": Case(
        {"model_dir": "gs://bucket!/x"}, "model_dir: 'gs://bucket!/x' bucket name 'bucket!' has '!'"
    ),
    "model-dir-bucket-ip": Case(
        {"model_dir": "gs://192.168.5.4/x"}, "bucket name '192.168.5.4' is an IP address"
    ),
    "model-dir-double-slash": Case(
        {"model_dir": "gs://bucket//x"}, "model_dir: 'gs://bucket//x' has an empty path segment"
    ),
    "model-dir-dot-dot": Case(
        {"model_dir": "gs://bucket/a/../b"}, "model_dir: 'gs://bucket/a/../b' has a `.` or `..`"
    ),
    "model-dir-tilde": Case(
        {"model_dir": "~/models"}, "model_dir: '~/models': `~` is not expanded"
    ),
    "model-dir-empty": Case({"model_dir": ""}, f"model_dir: is empty; {ACCEPTED}"),
    "model-dir-newline": Case({"model_dir": "/tmp/a\nb"}, "model_dir: '/tmp/a\\nb' has a control"),
    "data-dir-s3": Case({"data_dir": "s3://data/x"}, "data_dir: 's3://data/x': s3:// storage"),
    "set-model-dir": Case(
        {}, "model_dir: 'gs:/bucket/y': starts like a URI", args=("--set", "model_dir=gs:/bucket/y")
    ),
    "model-dir-under-a-file": Case(
        {"model_dir": "a-file/model"},
        "tfdist: cannot create model_dir ",
        prepare=lambda case_dir: (case_dir / "a-file").write_text(""),
    ),
    "model-dir-of-another-trainer": Case(
        {},
        "holds checkpoints of another trainer (trainer.command was ['python', 'other.py']",
        prepare=another_trainers_model_dir,
    ),
    "entrypoint-typo": Case(
        {"trainer": {"entrypoint": "tfdist.examples.digitz"}},
        "tfdist: trainer.entrypoint: no module named 'tfdist.examples.digitz'",
    ),
    "entrypoint-without-the-contract": Case(
        {"trainer": {"entrypoint": "lacking_trainer"}},
        "tfdist: trainer.entrypoint: lacking_trainer does not define loss_fn, train_input_fn, "
        "eval_input_fn, which the trainer contract requires",
        prepare=lambda case_dir: (case_dir / "lacking_trainer.py").write_text(
            "def build_model(ctx):\n    raise NotImplementedError\n"
        ),
    ),
    "command-missing": Case(
        {"trainer": {"command": ["/no/such/binary"]}},
        "tfdist: trainer.command: cannot run '/no/such/binary'",
    ),
    "cluster-beyond-the-machine": Case(
        {"cluster": {"chief": 1, "worker": 100_000}},
        "tfdist: cluster: 100001 roles are more than this machine runs locally",
    ),
    "cluster-beyond-the-limit-set": Case(
        {"cluster": {"worker": 3}},
        "tfdist: cluster: 4 roles are more than this machine runs locally (the limit set: at "
        "most 3)",
        args=("--max-local-roles", "3"),
    ),
    "max-local-roles-env": Case(
        {}, "TFDIST_MAX_LOCAL_ROLES='many': write a number", env={"TFDIST_MAX_LOCAL_ROLES": "many"}
    ),
    "max-steps-zero": Case(
        {"train_spec": {"max_steps": 0}}, "train_spec.max_steps: Input should be greater than 0"
    ),
    "max-steps-past-int64": Case(
        {"train_spec": {"max_steps": 2**63}},
        "train_spec.max_steps: Input should be less than or equal to 9223372036854775807",
    ),
    "two-chiefs": Case({"cluster": {"chief": 2}}, "cluster.chief: a cluster has exactly one chief"),
    "ps-without-workers": Case(
        {"cluster": {"ps": 1}}, "cluster.ps: parameter-server training needs at least one worker"
    ),
    "bad-name": Case({"name": "Bad_Name"}, "name: 'Bad_Name' must be a DNS-1123 label"),
    "unknown-field": Case({"epochs": 3}, "epochs: unknown field; remove it or correct"),
    "reserved-env": Case(
        {"trainer": {"command": QUICK, "env": {"TF_CONFIG": "{}"}}},
        "trainer.env: TF_CONFIG is set by tfdist for each role",
    ),
    "env-name-with-equals": Case(
        {"trainer": {"command": QUICK, "env": {"A=B": "1"}}},
        "trainer.env: 'A=B' cannot name an environment variable",
    ),
    "eval-name-with-slash": Case(
        {"eval_spec": {"name": "a/b"}}, "eval_spec.name: use letters, digits"
    ),
    "set-without-value": Case(
        {}, "--set 'model_dir': write it as field.path=value", ("--set", "model_dir")
    ),
    "set-unknown-path": Case(
        {},
        "invalid override 'trainer.entrypoint.x': trainer.entrypoint has no fields",
        ("--set", "trainer.entrypoint.x=1"),
    ),
    "spec-file-missing": Case(None, "cannot read job spec"),
    "spec-not-utf8": Case(None, "not valid YAML/JSON: it is not UTF-8 text", spec_text=b"\xff\xfe"),
    "spec-not-yaml": Case(None, "not valid YAML/JSON", spec_text="name: [unclosed\n"),
    "spec-not-a-mapping": Case(None, "expected a mapping with `name`", spec_text="- a\n- b\n"),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root`: file contents, None for directories."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def processes_with_env(name: str, value: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (process.info["environ"] or {}).get(name) == value:
                found.append(" ".join(process.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def write_spec(case: Case, case_dir: Path) -> Path:
    path = case_dir / "job.yaml"
    if case.spec_text is not None:
        content = case.spec_text
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    elif case.spec is not None:
        path.write_text(json.dumps({**base_spec(), **case.spec}))
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CLI_CASES))
def test_tfdist_run_refuses(name: str, tmp_path: Path) -> None:
    case = CLI_CASES[name]
    spec_file = write_spec(case, tmp_path)
    if case.prepare is not None:
        case.prepare(tmp_path)
    before = snapshot(tmp_path)
    marker = uuid.uuid4().hex
    env = {**os.environ, **case.env, CASE_ENV: marker}
    command = [sys.executable, "-m", "tfdist.cli", "run", str(spec_file), *case.args]

    result = subprocess.run(
        [*command, "--run-root", "runs"], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count(case.reason) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""  # nothing launched, nothing to report
    assert snapshot(tmp_path) == before  # no model directory, no run root, no `gs:` folder
    assert processes_with_env(CASE_ENV, marker) == []


def test_a_refused_trainer_leaves_nothing_that_blocks_the_corrected_one(tmp_path: Path) -> None:
    """The typo is refused before anything is written; the corrected spec runs into the same
    model directory."""
    case = Case({"trainer": {"command": ["/no/such/binary"]}}, "")
    spec_file = write_spec(case, tmp_path)
    command = [sys.executable, "-m", "tfdist.cli", "run", str(spec_file), "--run-root", "runs"]
    refused = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    assert not (tmp_path / "model").exists()

    write_spec(Case({}, ""), tmp_path)
    corrected = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert corrected.returncode == 0, corrected.stdout + corrected.stderr
    assert f"model_dir {tmp_path / 'model'}" in corrected.stdout
    assert (tmp_path / "model" / FINGERPRINT_FILE).exists()


# -- the launch task -----------------------------------------------------------------------------

LAUNCH_CASES: dict[str, str] = {
    "base_no_bucket": "model_dir_base: 'gs://' names no bucket",
    "base_one_slash": "model_dir_base: 'gs:/bucket/models': starts like a URI (`gs:`)",
    "base_upper_scheme": "model_dir_base: 'GS://bucket/models': the scheme is written `gs://`",
    "base_s3": "model_dir_base: 's3://bucket/models': s3:// storage is not supported",
    "base_relative": "model_dir_base: 'models' is a relative path, which would resolve against",
    "base_upper_bucket": "model_dir_base: 'gs://Bad_Bucket/models' bucket name 'Bad_Bucket' has "
    "uppercase letters",
    "base_bang_bucket": "model_dir_base: 'gs://bucket!/models' bucket name 'bucket!' has '!'",
    "base_not_a_directory": "cannot create model_dir ",
    "data_relative": "data_dir: 'data' is a relative path",
    "data_hdfs": "data_dir: 'hdfs://namenode/data': hdfs:// storage is not supported",
    "max_steps_zero": "train_spec.max_steps: Input should be greater than 0",
    "unknown_override": "train_spec.max_stepz: unknown field",
    "eval_name_path": "eval_spec.name: use letters, digits",
    "cluster_too_big": "cluster: 100001 roles are more than this machine runs locally",
    "entrypoint_typo": "trainer.entrypoint: no module named 'tfdist.examples.digitz'",
    "command_missing": "trainer.command: cannot run 'no-such-trainer'",
    "jobset_local_base": "model_dir_base: '/tmp/tfdist-pods/models' is a local path, but on "
    "the jobset backend every pod has its own disk",
    "serving_relative": "serving_base: 'serving' is a relative path",
}
DAG_ID = "tfdist_bad_input"


@dataclass(frozen=True)
class DagRun:
    home: AirflowHome
    output: str
    before: dict[str, bytes | None]


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory: pytest.TempPathFactory) -> DagRun:
    """`airflow dags test` of the DAG of refusals, once for every case."""
    home = AirflowHome(tmp_path_factory.mktemp("bad-input"))
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.migrate()
    home.base_dir.mkdir(parents=True)
    (home.base_dir / "a-file").write_text("")
    before = snapshot(home.root / "tfdist")
    result = home.dags_test(DAG_ID, {})
    return DagRun(home, result.stdout + result.stderr, before)


def task_output(output: str, task_id: str) -> str:
    """What `dags test` printed while it ran one task."""
    start = output.index(f"[DAG TEST] starting task_id={task_id} ")
    end = output.index(f"[DAG TEST] end task task_id={task_id} ", start)
    return output[start:end]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("group", list(LAUNCH_CASES))
def test_the_launch_task_refuses(group: str, refused_run: DagRun) -> None:
    rows = {row.task_id: row for row in refused_run.home.tasks(DAG_ID)}
    launch = rows[f"{group}.launch"]
    assert (launch.state, launch.try_number) == ("failed", 1)  # retries=2, yet not retried
    assert rows[f"{group}.stop"].state == "upstream_failed"  # nothing was launched to stop
    log = task_output(refused_run.output, f"{group}.launch")
    assert log.count(LAUNCH_CASES[group]) == 1, log
    assert re.search(r"Task exited .*exit_code=2", log), log
    assert "action=fail" in log
    assert "Traceback" not in log


def test_the_refused_launches_wrote_nothing_and_left_no_process(refused_run: DagRun) -> None:
    home = refused_run.home
    assert {row.task_id for row in home.tasks(DAG_ID)} >= {f"{g}.launch" for g in LAUNCH_CASES}
    assert snapshot(home.root / "tfdist") == refused_run.before  # models, data, serving
    assert not (home.root / "runs").exists()  # the run root
    assert not Path("/tmp/tfdist-pods").exists()
    assert processes_with_env("AIRFLOW_HOME", str(home.home)) == []
    assert "Traceback" not in refused_run.output
