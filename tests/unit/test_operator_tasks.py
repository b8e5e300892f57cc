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
from task_context import context, launched

from tfdist.fingerprint import FINGERPRINT_FILE
from tfdist.gate import Blessing, write_blessing
from tfdist.spec import parse_spec
from tfdist.storage import LocalStorage
from tfdist.testing import FakeBackend
from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.backends import LocalBackend
from tfdist_airflow.contracts import Deployed, Exported, Gated, Launched
from tfdist_airflow.deploy import DeployModelOperator
from tfdist_airflow.export import ExportModelOperator
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
    xcoms: dict[str, Any] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: xcoms.__setitem__(key, value))
    context: Any = {"dag": SimpleNamespace(dag_id="nightly"), "run_id": RUN_ID, "ti": ti}
    roles = operator.execute(context)
    pushed: dict[str, Any] = xcoms[Launched.key]
    assert roles == list(Launched.model_validate(pushed).handle.roles)
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


def test_a_retried_launch_reattaches_to_the_gang_that_still_runs(tmp_path: Path) -> None:
    """The launch task's process died after the roles started: its retry hands over the
    running launch and starts no second gang."""
    first, backend = run_launch(tmp_path, "pass", fake=str(tmp_path))

    again, _ = run_launch(tmp_path, "pass", fake=str(tmp_path))

    assert again["handle"] == first["handle"]
    assert (first["launched_at"] is None, again["launched_at"]) == (False, None)
    assert [verb for verb, _ in backend.calls].count("launch") == 1
    assert ("stop", "*") not in backend.calls


def test_a_retried_launch_replaces_a_launch_that_no_longer_runs(tmp_path: Path) -> None:
    """An earlier launch whose roles all ended (stopped when its run was marked failed) is
    cleaned up, and a new one starts (it resumes from the last checkpoint)."""
    first, backend = run_launch(tmp_path, "pass", fake=str(tmp_path))
    backend.stop(Launched.model_validate(first).handle)

    again, _ = run_launch(tmp_path, "pass", fake=str(tmp_path))

    old, new = (Launched.model_validate(x).handle.launch_id for x in (first, again))
    assert old != new
    assert ("cleanup", old) in backend.calls
    assert [launch.handle.launch_id for launch in backend.launches.values()] == [new]


def test_a_retried_launch_replaces_a_launch_its_first_try_left_half_started(
    tmp_path: Path,
) -> None:
    """Where roles start one by one (local processes), a launch task killed between two
    roles leaves one never started: its retry stops the half gang and launches anew."""
    from tfdist.backend import RoleState, RoleStatus
    from tfdist.capabilities import LOCAL

    backend = FakeBackend.named(str(tmp_path))
    backend.capabilities = LOCAL
    job = {**quick_job(tmp_path / "unused", "pass"), "cluster": {"worker": 1}}
    first = LaunchRolesOperator(
        task_id="launch",
        job=job,
        backend={"kind": "fake", "name": str(tmp_path)},
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
    )
    ctx = context(dag_id="nightly", run_id=RUN_ID)
    first.execute(ctx)
    half = Launched.model_validate(launched(ctx)).handle
    backend.launches[half.launch_id].statuses["worker-0"] = RoleStatus(
        name="worker-0", state=RoleState.PENDING
    )

    first.execute(ctx)

    again = Launched.model_validate(launched(ctx)).handle
    assert again.launch_id != half.launch_id
    assert ("cleanup", half.launch_id) in backend.calls
    assert list(backend.launches) == [again.launch_id]


def test_the_launch_refuses_an_override_of_the_model_dir(tmp_path: Path) -> None:
    operator = LaunchRolesOperator(
        task_id="launch",
        job=quick_job(tmp_path / "unused", "pass"),
        backend={"kind": "fake", "name": str(tmp_path)},
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
        overrides={"model_dir": str(tmp_path / "elsewhere")},
    )
    context: Any = {"dag": SimpleNamespace(dag_id="nightly"), "run_id": RUN_ID}

    with pytest.raises(InputRefused) as refused:
        operator.execute(context)

    assert refused.value.reason.startswith("overrides: model_dir is this run's own directory")
    assert not FakeBackend.named(str(tmp_path)).launches


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
    pushed = {
        launch.task_id: Launched.model_validate({"spec": redacted(spec), "handle": handle}),
        "gate": Gated(blessing=blessing),
    }
    context["ti"] = SimpleNamespace(xcom_pull=lambda task_ids, key: pushed[task_ids].model_dump())

    export.render_template_fields(context)
    exported = Exported.model_validate(export.execute(context))

    received = json.loads(dump.read_text())
    out = f"{spec.model_dir}/export/40"
    assert (exported.path, exported.global_step) == (out, 40)
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
    pushed = {
        "gate": Gated(blessing=blessed(model_dir)),
        "export": Exported(model_dir=str(model_dir), path=str(export), global_step=40),
    }
    context: Any = {
        "ti": SimpleNamespace(xcom_pull=lambda task_ids, key: pushed[task_ids].model_dump()),
        "run_id": run_id,
        "dag_run": dag_run,
        "outlet_events": defaultdict(SimpleNamespace),
    }
    operator = DeployModelOperator(
        task_id="deploy",
        gate_task_id="gate",
        export_task_id="export",
        serving_base=str(tmp_path / "serving"),
        model_name="digits",
    )
    return Deployed.model_validate(operator.execute(context)).deployment.model_dump()


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


def test_the_launch_asks_the_gate_for_an_evaluator_before_any_role_starts(
    tmp_path: Path,
) -> None:
    """A run that sizes the evaluator away, in a step followed by a gate, is refused."""
    backend = FakeBackend.named(str(tmp_path))
    job = {**quick_job(tmp_path / "unused", "pass"), "cluster": {"evaluator": 1}}
    with DAG("nightly", schedule=None) as dag:
        step = train_and_evaluate(
            parse_spec(job),
            backend=LocalBackend(),
            model_dir_base=str(tmp_path / "models"),
            overrides={"cluster.evaluator": "{{ params.evaluators }}"},
        )
        gate_export_deploy(step, thresholds={}, serving_base=str(tmp_path / "s"), model_name="m")
    launch = dag.get_task(step.launch_task_id)
    assert isinstance(launch, LaunchRolesOperator)
    launch.backend = {"kind": "fake", "name": str(tmp_path)}
    context: Any = {"dag": dag, "run_id": RUN_ID, "params": {"evaluators": 0}}
    launch.render_template_fields(context)

    with pytest.raises(InputRefused) as refused:
        launch.execute(context)

    assert refused.value.reason.startswith(
        "cluster.evaluator: task gate gates on the evaluator's results and this run's job has "
        "no evaluator"
    )
    assert not backend.launches
