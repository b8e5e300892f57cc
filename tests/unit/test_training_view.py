"""The Training view by value: progress parsing, gate lines, series, roles, collected runs, pages.

A run is written by hand into a temporary directory with the same records the roles, the gate
and the deploy write (local storage); task rows and XComs are what the API server reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tfdist.deploy import Deployment
from tfdist.gate import Baseline, GateSpec, MetricThreshold, decide, write_blessing
from tfdist.launch.local import RESTART_MARKER
from tfdist.records import Admission, EvalRecord, eval_record_name
from tfdist.storage import LocalStorage, storage_for
from tfdist_airflow.contracts import Deployed, Gated, Launched, TaskKind
from tfdist_airflow.roles import redacted
from tfdist_airflow.view.bar import Bar
from tfdist_airflow.view.charts import metric_chart, nice_ticks, timeline_chart
from tfdist_airflow.view.collect import TaskRow, collect_view
from tfdist_airflow.view.model import (
    Line,
    LineKind,
    Progress,
    RoleTask,
    Series,
    eval_series,
    parse_progress,
    role_rows,
    threshold_lines,
)
from tfdist_airflow.view.page import render_page
from tfdist_airflow.view.read import count_in_file
from tfdist_airflow.view.urls import (
    console_url,
    files_view_url,
    pod_logs_url,
    tensorboard_url,
    training_view_url,
)

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
ROLES = ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")
SECRET = "s3cr3t-token-value"
THRESHOLDS = {
    "accuracy": {"min": 0.9, "change": {"direction": "higher_is_better", "absolute": -0.02}},
    "loss": {"max": 0.5},
}


def record(step: int, accuracy: float, loss: float, timestamp: float = 0.0) -> EvalRecord:
    return EvalRecord(
        global_step=step,
        metrics={"accuracy": accuracy, "loss": loss},
        checkpoint_path=f"/m/ckpt-{step}",
        timestamp=timestamp or float(step),
        eval_steps=5,
    )


# -- pure pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log", "step", "rate"),
    [
        pytest.param(
            "10:00:01 chief-0 INFO tfdist.train: step 100/400 loss 0.3 (41.5 steps/s)\n"
            "10:00:03 chief-0 INFO tfdist.train: step 200/400 loss 0.2 (52.0 steps/s)\n"
            "10:00:03 chief-0 INFO tfdist.train: saved checkpoint for step 200\n",
            200,
            52.0,
            id="chief",
        ),
        pytest.param("eval at step 300 over 5 batches: accuracy 0.95\n", 300, None, id="evaluator"),
        pytest.param("worker-1: step 120, 8.5 closures/s\n", 120, 8.5, id="ps-worker"),
        pytest.param("serving grpc://127.0.0.1:4000\n", None, None, id="nothing"),
    ],
)
def test_progress_is_the_last_step_and_rate_logged(
    log: str, step: int | None, rate: float | None
) -> None:
    assert parse_progress(log) == Progress(last_step=step, steps_per_sec=rate)


def test_gate_lines_follow_the_thresholds_and_the_baseline() -> None:
    gate = GateSpec.from_params(
        {
            "accuracy": {
                "min": 0.9,
                "change": {"direction": "higher_is_better", "absolute": -0.02, "relative": -0.1},
            },
            "loss": {"max": 0.5},
        }
    ).thresholds
    accuracy = threshold_lines(gate["accuracy"], baseline=0.95)
    assert [(line.kind, round(line.value, 9), line.label) for line in accuracy] == [
        (LineKind.MIN, 0.9, "min 0.9"),
        (LineKind.CHANGE, 0.93, "change limit -0.02"),
        (LineKind.CHANGE, 0.855, "change limit -10%"),
    ]
    assert threshold_lines(gate["accuracy"], baseline=None) == (
        Line(kind=LineKind.MIN, value=0.9, label="min 0.9"),
    )
    assert threshold_lines(gate["loss"], baseline=0.2) == (
        Line(kind=LineKind.MAX, value=0.5, label="max 0.5"),
    )


def test_series_sort_by_step_and_keep_the_newest_record_of_a_step() -> None:
    records = [
        record(200, 0.95, 0.2),
        record(100, 0.80, 0.6, timestamp=1.0),
        record(100, 0.85, 0.5, timestamp=2.0),  # re-evaluated after a restart
    ]
    blessing = decide(
        record(200, 0.95, 0.2),
        GateSpec.from_params(THRESHOLDS),
        Baseline(version=4, metrics={"accuracy": 0.96, "loss": 0.25}, model_dir="/m0"),
        now=0,
    )
    accuracy, loss = eval_series(records, blessing)
    assert accuracy.metric == "accuracy"
    assert accuracy.points == ((100, 0.85), (200, 0.95))
    assert [(line.kind, round(line.value, 9)) for line in accuracy.lines] == [
        (LineKind.MIN, 0.9),
        (LineKind.CHANGE, 0.94),
        (LineKind.BASELINE, 0.96),
    ]
    assert accuracy.lines[-1].label == "deployed v4 0.96"
    assert loss.points == ((100, 0.5), (200, 0.2))
    assert [line.kind for line in loss.lines] == [LineKind.MAX, LineKind.BASELINE]
    assert eval_series(records, None)[0].lines == ()


def test_roles_are_ordered_and_prefer_their_own_times() -> None:
    tasks = [RoleTask(role=role, state="success", start=T0, end=T0, try_number=1) for role in ROLES]
    tasks[2] = RoleTask(role="worker-1", state="running", start=T0, try_number=3)
    progress = {
        "chief-0": Progress(
            started=T0 - timedelta(seconds=30), ended=T0, last_step=400, steps_per_sec=50.0
        )
    }
    rows = role_rows(reversed(tasks), progress)
    assert [row.role for row in rows] == list(ROLES)
    chief, _, worker1, *_ = rows
    assert (chief.start, chief.end, chief.last_step, chief.steps_per_sec) == (
        T0 - timedelta(seconds=30),
        T0,
        400,
        50.0,
    )
    assert (worker1.state, worker1.restarts, worker1.end, worker1.last_step) == (
        "running",
        2,
        None,
        None,
    )


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_count_in_file_across_chunks(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "worker-1.log"
    marker = RESTART_MARKER.format(role="worker-1")
    path.write_text(f"a\n{marker}\nb\n{marker}{marker}\n")
    assert count_in_file(path, marker, chunk) == 3
    assert count_in_file(tmp_path / "missing.log", marker, chunk) == 0


def test_nice_ticks() -> None:
    assert nice_ticks(0, 400) == [0, 100, 200, 300, 400]
    assert nice_ticks(0.83, 1.01) == [0.85, 0.9, 0.95, 1.0]
    assert nice_ticks(1, 1) == [1]


def test_metric_chart_draws_points_and_gate_lines() -> None:
    series = Series(
        metric="accuracy",
        points=((100, 0.8), (200, 0.9), (300, float("nan"))),
        lines=(Line(kind=LineKind.MIN, value=0.85, label="min 0.85"),),
    )
    svg = metric_chart(series)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<circle class="point"') == 2  # NaN is not plotted
    assert 'class="gate-line min" data-value="0.85"' in svg
    assert ">min 0.85</text>" in svg


def test_timeline_draws_running_roles_to_now() -> None:
    rows = role_rows(
        [
            RoleTask(role="chief-0", state="success", start=T0, end=T0 + timedelta(seconds=10)),
            RoleTask(role="evaluator-0", state="running", start=T0),
            RoleTask(role="ps-0", state="scheduled"),
        ],
        {},
    )
    svg = timeline_chart(rows, now=T0 + timedelta(seconds=20), width=416)
    # plot width 416 - 96 - 16 = 304 px for 20 s
    assert 'data-role="chief-0" x="96.0" y="12" width="152.0"' in svg
    assert 'data-role="evaluator-0" x="96.0" y="60" width="304.0"' in svg
    assert 'data-role="ps-0"' not in svg  # not started: a label, no bar


def test_timeline_draws_the_wait_for_admission_above_the_roles() -> None:
    """Kueue held the launch 10 s of the 20 s shown: a first row from queued to admitted."""
    rows = role_rows([RoleTask(role="chief-0", state="deferred", start=T0)], {})
    waited = Admission(
        launch_id="l1",
        queue="gpu-queue",
        queued_at=T0.timestamp(),
        admitted_at=(T0 + timedelta(seconds=10)).timestamp(),
    )
    svg = timeline_chart(rows, now=T0 + timedelta(seconds=20), width=416, admission=waited)
    assert 'data-role="admission" x="96.0" y="12" width="152.0"' in svg
    assert "queue gpu-queue: waited 10 s for admission" in svg
    assert 'data-role="chief-0" x="96.0" y="36" width="304.0"' in svg  # one row down
    still = waited.model_copy(update={"admitted_at": None})
    svg = timeline_chart(rows, now=T0 + timedelta(seconds=20), width=416, admission=still)
    assert 'data-role="admission" x="96.0" y="12" width="304.0"' in svg  # to now
    assert "waiting 20 s for admission" in svg


def test_urls() -> None:
    assert console_url("gs://bucket/models/run 1") == (
        "https://console.cloud.google.com/storage/browser/bucket/models/run%201"
    )
    assert console_url("/tmp/models") == ""
    assert training_view_url("d", "manual__2026-01-01T00:00:00+00:00") == (
        "dags/d/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/plugin/training"
    )
    assert files_view_url("d/x", "r") == "dags/d%2Fx/runs/r/plugin/model-files"
    assert tensorboard_url("", model_dir="gs://b/m", dag_id="d", run_id="r") == ""
    assert tensorboard_url(
        "https://tb.example.com/?logdir={model_dir}&run={run_id}",
        model_dir="gs://b/m",
        dag_id="d",
        run_id="r:1",
    ) == ("https://tb.example.com/?logdir=gs%3A%2F%2Fb%2Fm&run=r%3A1")
    url = pod_logs_url("ml", "digits-abc-chief-0", "my-project")
    assert url.startswith("https://console.cloud.google.com/logs/query;query=")
    assert "digits-abc-chief-0" in url and url.endswith("?project=my-project")


def test_pod_logs_links_name_the_role_pod() -> None:
    from tfdist_airflow.links import role_pod_logs_url

    config = {"kind": "jobset", "image": "trainer:1"}
    jobset = {"backend": "jobset", "job_id": "ml/digits-abc", "launch_id": "l"}
    url = role_pod_logs_url(config, jobset, "worker-1", "proj")
    assert url == pod_logs_url("ml", "digits-abc-worker-1-0-", "proj", prefix=True)
    assert quote('resource.labels.pod_name:"digits-abc-worker-1-0-"', safe="") in url
    local = {"backend": "local", "job_id": "/runs/digits-abc", "launch_id": "l"}
    assert role_pod_logs_url({"kind": "local"}, local, "worker-1", "") == ""
    assert role_pod_logs_url(config, jobset, "", "") == ""


def test_operators_carry_the_links() -> None:
    from tfdist_airflow.deploy import DeployModelOperator
    from tfdist_airflow.gate import BlessingGateOperator
    from tfdist_airflow.roles import WatchRoleOperator

    def names(operator: type[Any]) -> list[str]:
        return [link.name for link in operator.operator_extra_links]

    assert names(WatchRoleOperator) == ["Model directory", "TensorBoard", "Pod logs"]
    assert names(BlessingGateOperator) == ["Model directory", "TensorBoard"]
    assert names(DeployModelOperator) == ["Model directory", "TensorBoard", "Deployed version"]


# -- a run on disk, collected ----------------------------------------------------------------


def write_run(
    root: Path, *, accuracy: float, deployed: bool
) -> tuple[list[TaskRow], dict[Any, Any]]:
    """Model directory, run directory, task rows and XComs of a finished nightly run."""
    from tfdist.spec import parse_spec

    model_dir = str(root / "models" / "run-2")
    storage = LocalStorage()
    for step, acc in ((100, accuracy - 0.1), (200, accuracy)):
        path = eval_record_name(f"{model_dir}/eval", step)
        storage.write_text(path, record(step, acc, 0.3).model_dump_json())
    final = record(200, accuracy, 0.3)
    baseline = Baseline(version=1, metrics={"accuracy": 0.95, "loss": 0.3}, model_dir="/m1")
    blessing = decide(final, GateSpec.from_params(THRESHOLDS), baseline, now=0, model_dir=model_dir)
    write_blessing(storage, model_dir, blessing)

    run_dir = root / "runs" / "digits-abc"
    run_dir.mkdir(parents=True)
    for index, role in enumerate(ROLES):
        start = (T0 + timedelta(seconds=index)).timestamp()
        (run_dir / f"{role}.pid").write_text(json.dumps({"pid": 1, "created": start}))
        relaunches = "".join(f"\n{RESTART_MARKER.format(role=role)}\n" for _ in range(index == 2))
        log = f"{role} INFO step {150 + index} (2.5 steps/s)\n{relaunches}" * (1 + (index == 2))
        (run_dir / f"{role}.log").write_text(log)
        (run_dir / f"{role}.json").write_text(json.dumps({"env": {"API_TOKEN": SECRET}}))
        (run_dir / f"{role}.exit").write_text('{"exit_code": 0, "reason": ""}')
    for role, launch in (("worker-0", "abc"), ("worker-1", "an-earlier-launch")):
        progress = {"role": role, "unit": "closures", "count": 90, "rate": 8.5,
                    "global_step": 200, "max_steps": 200, "timestamp": 0.0,
                    "launch_id": launch, "reported_by": "chief-0"}  # fmt: skip
        storage.write_text(f"{model_dir}/tfdist/progress/{role}.json", json.dumps(progress))
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"API_TOKEN": SECRET}},
            "cluster": {"chief": 1, "worker": 2, "ps": 1, "evaluator": 1},
            "train_spec": {"max_steps": 200},
            "model_dir": model_dir,
        }
    )
    handle = {"backend": "local", "job_id": str(run_dir), "launch_id": "abc", "roles": ROLES}
    rows = [
        TaskRow("prepare_data", None, "success"),
        TaskRow("train_and_evaluate.launch", TaskKind.LAUNCH, "success"),
        *(
            TaskRow(
                "train_and_evaluate.watch",
                TaskKind.WATCH,
                "success",
                map_index=index,
                rendered_map_index=role,
                start=T0 + timedelta(minutes=5),
                try_number=2 if role == "worker-1" else 1,
            )
            for index, role in enumerate(ROLES)
        ),
        TaskRow("gate", TaskKind.GATE, "success"),
        TaskRow("deploy", TaskKind.DEPLOY, "success" if deployed else "skipped"),
    ]
    xcoms: dict[Any, Any] = {
        ("train_and_evaluate.launch", Launched.key): {"spec": redacted(spec), "handle": handle},
        ("gate", "return_value"): Gated(blessing=blessing).model_dump(mode="json"),
    }
    if deployed:
        deployment = Deployment(
            model_name="digits",
            version=2,
            path=str(root / "serving" / "digits" / "2"),
            run_id="run-2",
            model_dir=model_dir,
            metrics=final.metrics,
            global_step=200,
            deployed_at=0,
        )
        xcoms["deploy", "return_value"] = Deployed(deployment=deployment).model_dump(mode="json")
    return rows, xcoms


def test_a_blessed_and_deployed_run(tmp_path: Path) -> None:
    rows, xcoms = write_run(tmp_path, accuracy=0.96, deployed=True)
    view = collect_view(
        dag_id="nightly", run_id="run-2", run_state="success", rows=rows, xcoms=xcoms,
        storage_of=storage_for,
    )  # fmt: skip
    (step,) = view.steps
    assert step.group_id == "train_and_evaluate"
    assert step.model_dir == str(tmp_path / "models" / "run-2")
    assert [role.role for role in step.roles] == list(ROLES)
    # worker-0 reported its progress; worker-1's report is from an earlier launch: its log counts
    assert [role.last_step for role in step.roles] == [150, 200, 152, 153, 154]
    assert [(role.steps_per_sec, role.rate_unit) for role in step.roles[:3]] == [
        (2.5, "steps"),
        (8.5, "closures"),
        (2.5, "steps"),
    ]
    assert [role.restarts for role in step.roles] == [0, 0, 2, 0, 0]  # from worker-1's log
    assert step.roles[1].start == T0 + timedelta(seconds=1)  # the process, not the task
    assert [s.metric for s in step.series] == ["accuracy", "loss"]
    assert [p for p, _ in step.series[0].points] == [100, 200]
    assert step.decision is not None and step.decision.blessed
    assert step.decision.baseline_version == 1
    assert step.deployed is not None and step.deployed.version == 2
    assert step.problems == ()

    page = render_page(view, now=T0)
    assert page.count('class="role-row"') == 5
    assert '<td class="num">8.5 closures/s</td>' in page
    assert "BLESSED</strong> at step 200" in page
    assert "digits version 2</strong>" in page
    assert page.count('class="gate-line') == 5  # min, change, baseline; max, baseline
    # a blessed decision lists its margins: accuracy 0.96 vs version 1's 0.95, loss 0.3
    assert page.count('class="margin"') == 3  # min, change; max
    assert "<td>change &gt;= -0.02 vs version 1</td>" in page
    assert '<td class="num">+0.01 (0.95 -&gt; 0.96)</td><td class="num pass">+0.03</td>' in page
    assert "<script" not in page
    assert 'http-equiv="refresh"' not in page  # a finished run does not reload
    running = render_page(view.model_copy(update={"run_state": "running"}), now=T0)
    assert '<meta http-equiv="refresh" content="15">' in running
    assert SECRET not in page and SECRET not in view.model_dump_json()
    model_dir = step.model_dir
    assert f"<code>tensorboard --logdir {model_dir}</code>" in page  # none configured
    linked = render_page(view, now=T0, tensorboard="https://tb.test/?logdir={model_dir}")
    assert f'<a href="https://tb.test/?logdir={quote(model_dir, safe="")}"' in linked


def test_the_goodput_the_teardown_measured_shows_under_the_step(tmp_path: Path) -> None:
    """The teardown is found by the kind it declares, whatever its task id."""
    from tfdist.goodput import Goodput

    rows, xcoms = write_run(tmp_path, accuracy=0.96, deployed=True)
    rows = [*rows, TaskRow("train_and_evaluate.remove_roles", TaskKind.STOP, "success")]
    measured = Goodput(
        wall_secs=80,
        productive_secs=60,
        admission_secs=0,
        startup_secs=10,
        restart_secs=10,
        recompute_secs=0,
        lost_by_role={"ps": 10},
        steps=200,
        attempts=2,
    )

    def page() -> str:
        view = collect_view(
            dag_id="d", run_id="r", run_state="success", rows=rows, xcoms=xcoms,
            storage_of=storage_for,
        )  # fmt: skip
        return render_page(view, now=T0)

    before = page()
    xcoms["train_and_evaluate.remove_roles", "return_value"] = measured.model_dump(mode="json")
    after = page()
    assert 'id="goodput"' not in before
    assert '<p id="goodput">Goodput 75% of 80.0 s: training 60.0 s, startup 10.0 s' in after
    assert "(lost by role: ps 10.0 s)" in after


def test_a_run_that_was_not_blessed_says_why(tmp_path: Path) -> None:
    rows, xcoms = write_run(tmp_path, accuracy=0.85, deployed=False)
    view = collect_view(
        dag_id="nightly", run_id="run-2", run_state="success", rows=rows, xcoms=xcoms,
        storage_of=storage_for,
    )  # fmt: skip
    (step,) = view.steps
    assert step.decision is not None and not step.decision.blessed
    assert step.deployed is None and step.deploy_state == "skipped"
    page = render_page(view, now=T0)
    assert "NOT BLESSED" in page
    assert '<li class="reason">accuracy 0.85 is below min 0.9</li>' in page
    assert "Not deployed (deploy task: skipped)" in page


def test_a_run_before_launch_and_an_unreadable_model_dir(tmp_path: Path) -> None:
    rows = [TaskRow("train_and_evaluate.launch", TaskKind.LAUNCH, "running")]
    view = collect_view(
        dag_id="d", run_id="r", run_state="running", rows=rows, xcoms={}, storage_of=storage_for
    )
    assert view.steps[0].problems == (
        "train_and_evaluate.launch has not launched the roles yet (running)",
    )

    broken, xcoms = write_run(tmp_path, accuracy=0.96, deployed=True)
    record_path = tmp_path / "models" / "run-2" / "eval" / "record-000000000100.json"
    record_path.write_text("{not json")
    view = collect_view(
        dag_id="d", run_id="r", run_state="success", rows=broken, xcoms=xcoms,
        storage_of=storage_for,
    )  # fmt: skip
    (problem,) = view.steps[0].problems
    assert problem.startswith(f"{record_path}: not an eval record")
    assert view.steps[0].series[0].points == ((200, 0.96),)


def test_the_api_server_side_imports_no_tensorflow() -> None:
    """The plugin and its app, built in a fresh interpreter as the API server builds them."""
    probe = (
        "import sys, json\n"
        "from tfdist_airflow.plugin import TfdistPlugin\n"
        "apps = TfdistPlugin().fastapi_apps\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps({'prefix': apps[0]['url_prefix'], 'heavy': heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"prefix": "/tfdist", "heavy": []}


def test_before_the_gate_decides_the_charts_draw_the_bar_it_will_apply(tmp_path: Path) -> None:
    rows, xcoms = write_run(tmp_path, accuracy=0.96, deployed=False)
    asked: list[str] = []

    def bar_of(task_id: str) -> Bar:
        asked.append(task_id)
        return Bar(thresholds={"accuracy": MetricThreshold(min=0.8)})

    def collected() -> Series:
        view = collect_view(
            dag_id="d", run_id="r", run_state="running", rows=rows, xcoms=xcoms,
            storage_of=storage_for, bar_of=bar_of,
        )  # fmt: skip
        return view.steps[0].series[0]

    decided = collected()  # the gate's own record wins
    assert asked == [] and LineKind.BASELINE in {line.kind for line in decided.lines}
    (tmp_path / "models" / "run-2" / "blessing" / "blessing.json").unlink()
    before = collected()
    assert asked == ["gate"]
    assert [(line.kind, line.value) for line in before.lines] == [(LineKind.MIN, 0.8)]
