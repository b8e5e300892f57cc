"""The launch, export and deploy tasks' `execute`, with hand-made contexts (only the fields
they read) and the local backend: what XCom gets, what the model directory gets, what the
export process receives, what the backfill guard compares.

Roles run on the in-memory `FakeBackend`; the export process is real but trivial (a stand-in
for the interpreter that records what it was given), so no TensorFlow runs here.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG

from tfdist.fake import FakeBackend
from tfdist.fingerprint import FINGERPRINT_FILE
from tfdist.gate import Blessing, write_blessing
from tfdist.spec import parse_spec
from tfdist.storage import LocalStorage
from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.backends import LocalBackend
from tfdist_airflow.gating import DeployModelOperator, ExportModelOperator
from tfdist_airflow.refusals import InputRefused
from tfdist_airflow.roles import REDACTED, LaunchRolesOperator, redacted

SECRET = "s3cr3t-token-7d41"
RUN_ID = "scheduled__2026-01-02"


def quick_job(model_dir: Path, code: str, **env: str) -> dict[str, Any]:
    """A chief that runs `python -c CODE` and ends."""
    return {
        "name": "quick",
        "trainer": {"command": [sys.executable, "-c", code], "env": env},
        "train_spec": {"max_steps": 10},
        "model_dir": str(model_dir),
    }


def run_launch(tmp_path: Path, code: str, fake: str) -> tuple[dict[str, Any], FakeBackend]:
    """The launch task of run `RUN_ID` on the in-memory backend called `fake`."""
    operator = LaunchRolesOperator(
        task_id="launch",
        job=quick_job(tmp_path / "unused", code),
        backend={"kind": "fake", "name": fake},
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
    )
    context: Any = {"dag": SimpleNamespace(dag_id="nightly"), "run_id": RUN_ID}
    pushed: dict[str, Any] = operator.execute(context)
    return pushed, FakeBackend.named(fake)


# -- launch -----------------------------------------------------------------------------------


def test_the_launch_claims_the_model_dir_for_its_trainer(tmp_path: Path) -> None:
    pushed, backend = run_launch(tmp_path, "print('v1')", fake=str(tmp_path))

    model_dir = tmp_path / "models" / "nightly" / RUN_ID
    assert pushed["spec"]["model_dir"] == str(model_dir)
    assert backend.calls[:2] == [("admit", "quick"), ("handles", "nightly/" + RUN_ID + "/train")]
    tag = json.loads((model_dir / FINGERPRINT_FILE).read_text())
    assert tag["fields"]["trainer.command"] == [sys.executable, "-c", "print('v1')"]
    (model_dir / "ckpt-1.index").touch()  # what its chief would write
    with pytest.raises(InputRefused) as refused:
        run_launch(tmp_path, "print('another trainer')", fake=str(tmp_path))
    assert refused.value.reason.startswith(
        f"model_dir {model_dir} holds checkpoints of another trainer (trainer.command was "
    )
    assert [verb for verb, _ in backend.calls].count("launch") == 1


# -- export -----------------------------------------------------------------------------------

FAKE_PYTHON = """#!{python}
import json, os, sys
with open({dump!r}, "w") as out:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, out)
print("exported")
"""


def blessed(model_dir: Path, step: int = 40) -> Blessing:
    blessing = Blessing(
        blessed=True,
        metrics={"accuracy": 0.95},
        global_step=step,
        checkpoint_path=str(model_dir / f"ckpt-{step}"),
        model_dir=str(model_dir),
        thresholds={},
        baseline=None,
        decided_at=0.0,
    )
    write_blessing(LocalStorage(), str(model_dir), blessing)
    return blessing


def test_the_export_process_gets_the_real_trainer_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export runs in the trainer's environment: `trainer.env` as rendered for this run
    (XCom holds only its keys), not `<redacted>`."""
    monkeypatch.delenv("API_TOKEN", raising=False)
    dump = tmp_path / "export-process.json"
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable, dump=str(dump)))
    python.chmod(0o755)
    backend = LocalBackend(run_root=str(tmp_path / "runs"), python=str(python))
    job = quick_job(tmp_path / "unused", "pass", REGION="eu")
    job["cluster"] = {"evaluator": 1}
    with DAG("nightly", schedule=None, params={"token": SECRET}) as dag:
        training = train_and_evaluate(
            parse_spec(job),
            backend=backend,
            model_dir_base=str(tmp_path / "models"),
            overrides={"trainer.env.API_TOKEN": "{{ params.token }}"},
        )
        _, export, _ = gate_export_deploy(
            training, thresholds={}, serving_base=str(tmp_path / "serving"), model_name="m"
        )
    launch = dag.get_task("train_and_evaluate.launch")
    assert isinstance(launch, LaunchRolesOperator) and isinstance(export, ExportModelOperator)
    context: Any = {"dag": dag, "run_id": RUN_ID, "params": {"token": SECRET}}
    launch.render_template_fields(context)
    spec = launch.render_spec(context)
    blessing = blessed(Path(spec.model_dir))
    handle = {"backend": "local", "job_id": "-", "launch_id": "-", "roles": []}
    pushed = {"spec": redacted(spec), "handle": handle}
    context["ti"] = SimpleNamespace(xcom_pull=lambda task_ids: pushed)

    export.render_template_fields(context)
    out = export.execute(context)

    received = json.loads(dump.read_text())
    assert out == f"{spec.model_dir}/export/40"
    assert received["argv"] == [
        "-m",
        "tfdist.runtime.export",
        "--checkpoint",
        blessing.checkpoint_path,
        "--out",
        out,
    ]
    env = received["env"]
    assert (env["API_TOKEN"], env["REGION"]) == (SECRET, "eu")
    assert json.loads(env["TFDIST_JOB"])["trainer"]["env"] == {
        "API_TOKEN": REDACTED,
        "REGION": REDACTED,
    }
    assert REDACTED not in {env[key] for key in ("API_TOKEN", "REGION")}
    assert os.environ.get("API_TOKEN") is None  # the task's own environment is untouched


# -- deploy -----------------------------------------------------------------------------------


def deploy_task(tmp_path: Path, run_id: str, dag_run: SimpleNamespace) -> dict[str, Any]:
    """`DeployModelOperator.execute` for one run after a blessed gate and an export (a
    SavedModel directory's files)."""
    model_dir = tmp_path / "models" / run_id
    export = model_dir / "export" / "40"
    (export / "variables").mkdir(parents=True, exist_ok=True)
    (export / "variables" / "variables.index").write_text(run_id)
    (export / "saved_model.pb").write_text(run_id)
    blessed(model_dir)
    job = quick_job(model_dir, "pass")
    pushed: dict[str, Any] = {
        "launch": {
            "spec": job,
            "handle": {"backend": "local", "job_id": "-", "launch_id": "-", "roles": []},
        },
        "export": str(export),
    }
    context: Any = {
        "ti": SimpleNamespace(xcom_pull=lambda task_ids: pushed[task_ids]),
        "run_id": run_id,
        "dag_run": dag_run,
        "outlet_events": defaultdict(SimpleNamespace),
    }
    operator = DeployModelOperator(
        task_id="deploy",
        launch_task_id="launch",
        export_task_id="export",
        serving_base=str(tmp_path / "serving"),
        model_name="digits",
    )
    result: dict[str, Any] = operator.execute(context)
    return result


def day(n: int) -> datetime:
    return datetime(2026, 3, n, tzinfo=UTC)


def test_a_backfill_of_older_data_never_replaces_the_deployed_model(tmp_path: Path) -> None:
    """The guard compares the data each run was trained on (its data interval's end), not
    when the run was started: the backfill below runs after the first run."""
    from airflow.sdk.exceptions import AirflowSkipException

    first = deploy_task(
        tmp_path,
        "scheduled__2026-03-09",
        SimpleNamespace(data_interval_end=day(10), run_after=day(10)),
    )
    assert first["version"] == 1
    with pytest.raises(AirflowSkipException, match="a backfilled run never replaces a newer model"):
        deploy_task(
            tmp_path,
            "backfill__2026-03-01",
            SimpleNamespace(data_interval_end=day(2), run_after=day(20)),
        )

    newer = deploy_task(
        tmp_path,
        "scheduled__2026-03-10",
        SimpleNamespace(data_interval_end=day(11), run_after=day(11)),
    )
    assert newer["version"] == 2


def test_a_run_without_a_data_interval_is_dated_by_its_run_after(tmp_path: Path) -> None:
    """A manual run has no data interval: it counts as trained on data up to its run_after."""
    from airflow.sdk.exceptions import AirflowSkipException

    deploy_task(tmp_path, "manual__1", SimpleNamespace(data_interval_end=None, run_after=day(10)))
    with pytest.raises(AirflowSkipException, match="a backfilled run never replaces a newer model"):
        deploy_task(
            tmp_path, "backfill__1", SimpleNamespace(data_interval_end=day(5), run_after=day(12))
        )
    later = deploy_task(
        tmp_path, "manual__2", SimpleNamespace(data_interval_end=None, run_after=day(12))
    )
    assert later["version"] == 2
