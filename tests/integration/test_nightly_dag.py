"""The nightly DAG for real: Airflow 3.3 on SQLite, role processes, gate, export, deploy.

Once under `airflow dags test` (tasks one at a time; the gang launch keeps it from hanging),
and once under `airflow standalone` with LocalExecutor, where the role tasks must overlap.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import psutil
import pytest
from airflow_home import REPO, AirflowHome, TaskRow

pytestmark = pytest.mark.integration

DAG_ID = "nightly_retrain"
ROLES = {"chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"}
FAST = {"max_steps": 200}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    home = AirflowHome(tmp_path_factory.mktemp("nightly"))
    home.migrate()
    return home


def states(rows: list[TaskRow]) -> dict[str, str | None]:
    """Task id (mapped watch tasks by role) -> state."""
    return {
        (row.rendered_map_index if row.map_index >= 0 else row.task_id.split(".")[-1]): row.state
        for row in rows
    }


def last_json_line(stdout: str) -> object:
    """The CLI's JSON output (Airflow may print warnings before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def latest_model_dir(home: AirflowHome) -> Path:
    run_id = home.runs(DAG_ID)[-1][0]
    from tfdist_airflow.runs import run_model_dir

    return Path(run_model_dir(str(home.base_dir / "models"), DAG_ID, run_id))


def leftover_roles(home: AirflowHome) -> list[str]:
    root = str(home.root / "runs")
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            env = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "tfdist" in cmdline and (root in cmdline or root in json.dumps(env)):
            found.append(cmdline)
    return found


def goodput_xcom(home: AirflowHome) -> object:
    """What the latest run's teardown task returned: the run's goodput."""
    run_id = home.runs(DAG_ID)[-1][0]
    with sqlite3.connect(home.home / "airflow.db") as db:
        (value,) = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value' "
            "AND task_id LIKE '%stop'",
            (DAG_ID, run_id),
        ).fetchone()
    return json.loads(value)


def test_dag_file_imports_no_heavy_modules() -> None:
    dag_file = str(REPO / "dags" / "nightly_retrain.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag', {dag_file!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'kubernetes', 'kubernetes_asyncio', 'google'})\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


def test_dagbag_has_no_import_errors(airflow: AirflowHome) -> None:
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "print(json.dumps({'errors': bag.import_errors, 'dags': sorted(bag.dag_ids)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=airflow.env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    bag = last_json_line(result.stdout)
    assert isinstance(bag, dict)
    assert bag["errors"] == {}
    assert DAG_ID in bag["dags"]


def test_dags_test_deploys_then_next_run_is_gated_against_it(airflow: AirflowHome) -> None:
    first = airflow.dags_test(DAG_ID, FAST)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    rows = states(airflow.tasks(DAG_ID))
    assert {role: rows[role] for role in ROLES} == dict.fromkeys(ROLES, "success")
    assert [rows[t] for t in ("gate", "export", "deploy", "stop")] == ["success"] * 4
    serving = airflow.base_dir / "serving" / "digits"
    assert (serving / "1" / "saved_model.pb").exists()
    first_blessing = json.loads(
        (latest_model_dir(airflow) / "blessing" / "blessing.json").read_text()
    )
    assert first_blessing["blessed"] is True and first_blessing["baseline"] is None
    assert (latest_model_dir(airflow) / "blessing" / "BLESSED").exists()
    assert first_blessing["global_step"] == FAST["max_steps"]
    # The teardown measured the run's goodput: in model_dir and in its XCom.
    goodput = json.loads((latest_model_dir(airflow) / "tfdist" / "goodput.json").read_text())
    assert goodput["steps"] == FAST["max_steps"] and goodput["attempts"] == 1
    assert 0 < goodput["productive_secs"] < goodput["wall_secs"]
    assert goodput_xcom(airflow) == goodput

    # Two 200-step models differ by a few points of accuracy from run to run (asynchronous
    # parameter-server training), so the second run allows a drop wider than that noise.
    second = airflow.dags_test(DAG_ID, {**FAST, "max_accuracy_drop": 0.5})
    assert second.returncode == 0, second.stdout[-4000:]
    blessing = json.loads((latest_model_dir(airflow) / "blessing" / "blessing.json").read_text())
    assert blessing["baseline"]["version"] == 1
    assert blessing["baseline"]["metrics"] == first_blessing["metrics"]
    assert blessing["thresholds"]["accuracy"]["change"]["absolute"] == -0.5
    assert blessing["blessed"] is True, blessing["reasons"]
    assert (serving / "2" / "saved_model.pb").exists()
    deployment = json.loads((serving / "2" / "tfdist-deployment.json").read_text())
    assert deployment["version"] == 2 and deployment["run_id"] == airflow.runs(DAG_ID)[-1][0]
    assert leftover_roles(airflow) == []


def test_impossible_threshold_ends_green_with_deploy_skipped(airflow: AirflowHome) -> None:
    versions_before = sorted((airflow.base_dir / "serving" / "digits").glob("[0-9]*"))
    result = airflow.dags_test(DAG_ID, {**FAST, "min_accuracy": 1.01})
    assert result.returncode == 0, result.stdout[-4000:]
    assert airflow.runs(DAG_ID)[-1][1] == "success"
    rows = states(airflow.tasks(DAG_ID))
    assert rows["gate"] == "success"
    assert (rows["export"], rows["deploy"]) == ("skipped", "skipped")
    for verb in ("exported", "deployed"):  # each skipped task says why
        assert f"reason='not {verb}: not blessed: accuracy " in result.stdout
    model_dir = latest_model_dir(airflow)
    assert (model_dir / "blessing" / "NOT_BLESSED").exists()
    assert not (model_dir / "blessing" / "BLESSED").exists()
    blessing = json.loads((model_dir / "blessing" / "blessing.json").read_text())
    assert blessing["blessed"] is False
    assert any("accuracy" in reason for reason in blessing["reasons"])
    assert sorted((airflow.base_dir / "serving" / "digits").glob("[0-9]*")) == versions_before


def test_scheduler_runs_the_role_tasks_in_parallel(tmp_path: Path) -> None:
    home = AirflowHome(tmp_path)
    # Only the manual run below: unpaused after midnight UTC, the @daily DAG would also get a
    # scheduled run, training beside it (a second chief-0.log). Manual runs still start.
    home.env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    home.migrate()
    with home.standalone():
        unpaused = home.airflow("dags", "unpause", DAG_ID)
        assert unpaused.returncode == 0, unpaused.stderr[-2000:]
        run_id = "parallel-roles"
        conf = json.dumps(FAST)
        triggered = home.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "-c", conf)
        assert triggered.returncode == 0, triggered.stderr[-2000:]
        state = home.wait_for_run(DAG_ID, run_id, timeout=600)
        home.wait_until_idle(DAG_ID)
    every = home.tasks(DAG_ID, run_id)
    assert state == "success", states(every)
    rows = [row for row in every if row.rendered_map_index in ROLES]
    assert {row.rendered_map_index for row in rows} == ROLES
    # Every role task was running at one same moment: the latest start precedes the first end.
    starts = [row.start_date for row in rows if row.start_date]
    ends = [row.end_date for row in rows if row.end_date]
    assert len(starts) == len(ends) == len(ROLES)
    assert max(starts) < min(ends)
    assert leftover_roles(home) == []

    # Log hygiene: TensorFlow's start-up output is no ERROR in the data task's log, and a
    # role's lines carry one time, the role's own, and one level, the role's own.
    logs = home.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    (prepare,) = logs.glob("task_id=prepare_data/*.log")
    levels = {record["level"] for record in log_records(prepare)}
    assert "error" not in levels and "info" in levels
    records = [
        record
        for path in logs.glob("task_id=train_and_evaluate.watch/map_index=0/*")
        for record in log_records(path)
    ]
    chief = [str(record["event"]) for record in records]
    relayed = [r for r in records if str(r["event"]).startswith("[chief-0] tfdist.train: step ")]
    assert relayed, chief
    assert {record["level"] for record in relayed} == {"info"}
    (own_log,) = (tmp_path / "runs").rglob("chief-0.log")
    own = own_log.read_text()
    for record in relayed:  # the time the chief logged it, to the millisecond
        stamp = f"{str(record['timestamp'])[:23]}Z chief-0 INFO {str(record['event'])[10:]}"
        assert stamp in own, (record, own[-2000:])
    assert not [line for line in chief if re.match(r"\[chief-0\] \d{4}-\d\d-\d\d ", line)]
    assert not [line for line in chief if "absl::InitializeLog" in line]


def log_records(path: Path) -> list[dict[str, object]]:
    """A task log file's records (Airflow writes one JSON object a line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_airflow_lists_tfdist_as_a_provider(airflow: AirflowHome) -> None:
    result = airflow.airflow("providers", "list", "-o", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    providers = {p["package_name"]: p for p in last_json_line(result.stdout)}  # type: ignore[attr-defined]
    assert providers["tfdist"]["version"] == version("tfdist")
