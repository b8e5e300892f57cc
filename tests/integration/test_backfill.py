"""Reruns and backfill: fingerprinted model directories, concurrent backfill runs, a run marked
failed, and deploys that never roll production back or add a version twice.

The scheduler tests run `airflow standalone` (LocalExecutor, SQLite) on the DAGs of
`tests/integration/dags/reliability.py`.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow_home import AirflowHome
from jobtools import assert_no_process_left, exit_records, processes_of, run_tfdist, wait_for

from tfdist.backend import JobHandle, RoleState
from tfdist.fingerprint import FINGERPRINT_FILE
from tfdist.launch.local import LocalLauncher

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"
SECRET = "tfdist-test-s3cr3t-9f2c"


# -- fingerprinted model directories --------------------------------------------------------


def quick_job(name: str, model_dir: Path, code: str, **train: Any) -> dict[str, Any]:
    """A chief that runs `python -c CODE`, writes a file into its model_dir, and ends: no
    TensorFlow. (Only a directory its roles wrote into is bound to their trainer.)"""
    wrote = "import os, pathlib; pathlib.Path(os.environ['MODEL_DIR'], 'checkpoint').touch()"
    return {
        "name": name,
        "trainer": {"command": ["python", "-c", f"{code}; {wrote}"]},
        "train_spec": {"max_steps": 10, **train},
        "model_dir": str(model_dir),
    }


@pytest.mark.timeout(90)
def test_resuming_a_model_dir_with_another_trainer_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    v1, v2 = (quick_job("tagged", model_dir, f"print('{v}')") for v in ("v1", "v2"))
    first = run_tfdist(v1, tmp_path, timeout=60)
    assert first.returncode == 0, first.stderr
    tag = json.loads((model_dir / FINGERPRINT_FILE).read_text())
    assert tag["fields"]["trainer.command"] == v1["trainer"]["command"]

    more_steps = quick_job("tagged", model_dir, "print('v1')", max_steps=20)
    assert run_tfdist(more_steps, tmp_path, timeout=60).returncode == 0
    runs_before = sorted((tmp_path / "runs").iterdir())

    other = run_tfdist(v2, tmp_path, timeout=60)

    assert other.returncode == 2, other.stdout + other.stderr
    assert other.stderr == (
        f"tfdist: model_dir {model_dir} holds checkpoints of another trainer (trainer.command "
        f"was {v1['trainer']['command']!r}, is now {v2['trainer']['command']!r}); "
        "resuming them would mix two models. Use a new model_dir, or delete this one to start "
        "over\n"
    )
    assert sorted((tmp_path / "runs").iterdir()) == runs_before  # nothing launched


@pytest.mark.timeout(90)
def test_launch_task_refuses_another_trainer_for_the_same_run(tmp_path: Path) -> None:
    """A rerun of a run (same run id, so the same model_dir) after the DAG's trainer changed."""
    from tfdist_airflow.refusals import InputRefused
    from tfdist_airflow.roles import LaunchRolesOperator

    backend = {"kind": "local", "run_root": str(tmp_path / "runs")}
    pushes: dict[str, Any] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushes.__setitem__(key, value))
    context: Any = {
        "dag": SimpleNamespace(dag_id="nightly"),
        "run_id": "scheduled__2026-01-02",
        "ti": ti,
    }

    def launch(code: str) -> dict[str, Any]:
        operator = LaunchRolesOperator(
            task_id="launch",
            job=quick_job("rerun", tmp_path / "unused", code),
            backend=backend,
            group_id="train",
            model_dir_base=str(tmp_path / "models"),
        )
        operator.execute(context)
        pushed: dict[str, Any] = pushes["launched"]
        return pushed

    pushed = launch("print('v1')")
    handle = JobHandle.model_validate(pushed["handle"])
    launcher = LocalLauncher(tmp_path / "runs")
    wait_for(lambda: launcher.statuses(handle)["chief-0"].state.finished, 30, "the first run")

    with pytest.raises(InputRefused, match=r"holds checkpoints of another trainer"):
        launch("print('v2')")

    assert len(list((tmp_path / "runs").rglob("handle.json"))) == 1
    model_dir = Path(pushed["spec"]["model_dir"])
    assert model_dir == tmp_path / "models" / "nightly" / "scheduled__2026-01-02"
    assert (model_dir / FINGERPRINT_FILE).exists()


# -- deploys: a backfilled old date, a deploy run twice -------------------------------------

RAN_AFTER = datetime(2026, 4, 1, tzinfo=UTC)  # when the backfill below was started


def deploy_run(tmp_path: Path, run_id: str, trained_on: datetime) -> dict[str, Any]:
    """`DeployModelOperator.execute` for one run, with a hand-made context (only the fields it
    reads), after a blessed gate and an export (a SavedModel directory's files). Every run
    starts at `RAN_AFTER`: only its data interval tells the dates apart."""
    from tfdist.gate import Blessing, write_blessing
    from tfdist.storage import LocalStorage
    from tfdist_airflow.contracts import Deployed, Exported, Gated
    from tfdist_airflow.deploy import DeployModelOperator

    model_dir = tmp_path / "models" / run_id
    export = model_dir / "export" / "40"
    (export / "variables").mkdir(parents=True, exist_ok=True)
    (export / "variables" / "variables.index").write_text(run_id)
    (export / "saved_model.pb").write_text(run_id)
    blessing = Blessing(
        blessed=True,
        metrics={"accuracy": 0.95},
        global_step=40,
        checkpoint_path=str(model_dir / "ckpt-40"),
        model_dir=str(model_dir),
        thresholds={},
        baseline=None,
        decided_at=0.0,
    )
    write_blessing(LocalStorage(), str(model_dir), blessing)
    pushed = {
        "gate": Gated(blessing=blessing),
        "export": Exported(model_dir=str(model_dir), path=str(export), global_step=40),
    }
    context: Any = {
        "ti": SimpleNamespace(xcom_pull=lambda task_ids, key: pushed[task_ids].model_dump()),
        "run_id": run_id,
        "dag_run": SimpleNamespace(data_interval_end=trained_on, run_after=RAN_AFTER),
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


@pytest.mark.timeout(60)
def test_deploy_twice_adds_no_version_and_a_backfill_never_replaces_newer_data(
    tmp_path: Path,
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    serving = tmp_path / "serving" / "digits"
    newer = datetime(2026, 3, 2, tzinfo=UTC)
    first = deploy_run(tmp_path, "scheduled__2026-03-01", newer)
    assert first["version"] == 1

    again = deploy_run(tmp_path, "scheduled__2026-03-01", newer)  # the task cleared and rerun
    assert again == first
    assert sorted(p.name for p in serving.iterdir() if p.name.isdigit()) == ["1"]

    with pytest.raises(AirflowSkipException) as skipped:
        deploy_run(tmp_path, "backfill__2026-01-02", datetime(2026, 1, 3, tzinfo=UTC))

    assert str(skipped.value) == (
        f"version 1 (run scheduled__2026-03-01) was trained on newer data (up to "
        f"{newer.timestamp()}) than this run (up to "
        f"{datetime(2026, 1, 3, tzinfo=UTC).timestamp()}); a backfilled run never replaces "
        "a newer model"
    )
    assert sorted(p.name for p in serving.iterdir() if p.name.isdigit()) == ["1"]
    assert (serving / "1" / "saved_model.pb").read_text() == "scheduled__2026-03-01"


# -- through the scheduler ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowHome, str]]:
    home = AirflowHome(tmp_path_factory.mktemp("reliability"))
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.env["TFDIST_TEST_TOKEN"] = SECRET
    home.migrate()
    with home.standalone() as url:
        yield home, url


def api(url: str, method: str, path: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/api/v2{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def unpause_when_parsed(url: str, dag_id: str) -> None:
    def unpaused() -> bool:
        try:
            api(url, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
        except urllib.error.HTTPError:
            return False  # not parsed yet
        return True

    wait_for(unpaused, 120, f"{dag_id} to be parsed", interval=2)


def launched(
    home: AirflowHome, dag_id: str, run_id: str | None = None
) -> list[tuple[JobHandle, dict[str, Any]]]:
    """Each launch of the DAG (or of one run): its handle, and per role its TF_CONFIG."""
    from tfdist_airflow.runs import run_name

    found = []
    runs = home.root / "runs" / dag_id
    for path in sorted((runs / run_name(run_id) if run_id else runs).glob("**/handle.json")):
        handle = JobHandle.model_validate_json(path.read_text())
        records = {
            role: json.loads((path.parent / f"{role}.json").read_text()) for role in handle.roles
        }
        found.append((handle, records))
    return found


def xcom_values(home: AirflowHome, dag_id: str) -> list[tuple[str, str, str, str]]:
    """(run id, task id, key, value) of every XCom of the DAG."""
    with sqlite3.connect(home.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT run_id, task_id, key, value FROM xcom WHERE dag_id=?", (dag_id,)
        ).fetchall()
    return [(run_id, task_id, key, str(value)) for run_id, task_id, key, value in rows]


def epoch(moment: datetime | None) -> float:
    """Seconds since the epoch of a time read from the metadata database (stored in UTC)."""
    assert moment is not None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def finished_runs(home: AirflowHome, dag_id: str) -> list[tuple[str, str]]:
    return [(r, s) for r, s in home.runs(dag_id) if s in ("success", "failed")]


@pytest.mark.timeout(600)
def test_three_backfill_runs_at_once_share_no_port_directory_or_name(
    scheduler: tuple[AirflowHome, str],
) -> None:
    home, url = scheduler
    dag_id = "tfdist_backfill"
    unpause_when_parsed(url, dag_id)
    created = home.airflow(
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        "2026-01-02",
        "--to-date",
        "2026-01-04",
        "--max-active-runs",
        "3",
        timeout=120,
    )
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
    wait_for(lambda: len(finished_runs(home, dag_id)) == 3, 480, "three backfill runs", 2)

    runs = home.runs(dag_id)
    assert len(runs) == 3 and {state for _, state in runs} == {"success"}, runs
    jobs = launched(home, dag_id)
    assert len(jobs) == 3
    # At once: every run's roles had been launched before any role of any run ended.
    launch_ends = [
        epoch(row.end_date)
        for run_id, _ in runs
        for row in home.tasks(dag_id, run_id)
        if row.task_id.endswith(".launch")
    ]
    role_ends = [
        record["ended"]
        for handle, _ in jobs
        for record in exit_records(Path(handle.job_id)).values()
    ]
    assert len(launch_ends) == 3 and len(role_ends) == 6
    assert max(launch_ends) < min(role_ends)
    addresses = [
        address
        for _, records in jobs
        for job in json.loads(records["chief-0"]["env"]["TF_CONFIG"])["cluster"].values()
        for address in job
    ]
    assert len(addresses) == 6 and len(set(addresses)) == 6, addresses
    assert len({handle.job_id for handle, _ in jobs}) == 3
    model_dirs = {records["chief-0"]["env"]["MODEL_DIR"] for _, records in jobs}
    assert len(model_dirs) == 3
    for model_dir in map(Path, model_dirs):
        outputs = {p.stem: json.loads(p.read_text()) for p in model_dir.glob("*.json")}
        assert sorted(outputs) == ["chief-0", "worker-0"], model_dir
        assert {output["replicas"] for output in outputs.values()} == {2}
        assert (model_dir / FINGERPRINT_FILE).exists()

    # No credential from trainer.env in TF_CONFIG, XCom or any log.
    for handle, records in jobs:
        for role, record in records.items():
            assert SECRET not in record["env"]["TF_CONFIG"]
            path = Path(handle.job_id) / f"{role}.json"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the record itself holds it
    pushed = [
        json.loads(value)
        for _, task, key, value in xcom_values(home, dag_id)
        if task.endswith(".launch") and key == "launched"
    ]
    assert len(pushed) == 3
    assert {json.dumps(p["spec"]["trainer"]["env"]) for p in pushed} == {
        '{"TFDIST_TEST_TOKEN": "<redacted>"}'
    }
    assert not [row for row in xcom_values(home, dag_id) if SECRET in row[3]]
    logs = [*home.home.joinpath("logs").rglob("*"), *(home.root / "runs").rglob("*.log")]
    leaked = [p for p in logs if p.is_file() and SECRET in p.read_text(errors="replace")]
    assert leaked == []
    for handle, _ in jobs:
        assert_no_process_left(Path(handle.job_id))


def hold_run(home: AirflowHome, url: str) -> tuple[str, JobHandle, Path]:
    """A new run of `tfdist_hold` once every role runs and every watch task's trigger runs
    (Airflow calls a trigger's on_kill only once the triggerer runs it, see RELIABILITY.md):
    its run id, its launch, its task logs."""
    dag_id = "tfdist_hold"
    unpause_when_parsed(url, dag_id)
    run_id = api(url, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    def every_role_waits() -> bool:
        rows = [r for r in home.tasks(dag_id, run_id) if r.task_id.endswith(".watch")]
        jobs = launched(home, dag_id, run_id)
        return (
            len(rows) == 3
            and all(r.state == "deferred" for r in rows)
            and len(jobs) == 1
            and all(
                "started" in (Path(jobs[0][0].job_id) / f"{role}.log").read_text()
                for role in jobs[0][0].roles
            )
        )

    try:
        wait_for(every_role_waits, 240, "every role running, every watch task deferred", 1)
    except AssertionError as error:  # say where it stood
        rows = [
            (r.task_id, r.rendered_map_index, r.state, r.try_number)
            for r in home.tasks(dag_id, run_id)
        ]
        raise AssertionError(
            f"{error}; tasks: {rows}; launches: {launched(home, dag_id, run_id)}"
        ) from None
    ((handle, _),) = launched(home, dag_id, run_id)
    logs = home.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"

    def triggers_run() -> bool:
        return all(
            any(
                f"[{role}] waiting" in path.read_text()
                for path in logs.glob(f"task_id=*.watch/map_index={index}/*.trigger.*")
            )
            for index, role in enumerate(handle.roles)
        )

    wait_for(triggers_run, 120, "every watch task's trigger to run", 1)
    return run_id, handle, logs


@pytest.mark.timeout(400)
def test_a_run_marked_failed_leaves_no_role_running(scheduler: tuple[AirflowHome, str]) -> None:
    """Marking one deferred watch task failed stops its role (the trigger's `on_kill`);
    marking the run failed stops the rest (`on_kill` of each trigger, then the teardown,
    which Airflow still runs)."""
    home, url = scheduler
    dag_id = "tfdist_hold"
    run_id, handle, _ = hold_run(home, url)
    run_dir = Path(handle.job_id)
    launcher = LocalLauncher(home.root / "runs")
    watch = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train_and_evaluate.watch"

    api(url, "PATCH", f"{watch}/{handle.roles.index('evaluator-0')}", {"new_state": "failed"})
    wait_for(
        lambda: launcher.statuses(handle)["evaluator-0"].state.finished, 60, "evaluator-0 to stop"
    )
    assert exit_records(run_dir)["evaluator-0"]["reason"] == "stopped"
    time.sleep(3)  # chief and worker are not stopped with it: they go on
    assert launcher.statuses(handle)["chief-0"].state is RoleState.RUNNING
    assert launcher.statuses(handle)["worker-0"].state is RoleState.RUNNING

    marked = time.monotonic()
    api(url, "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
    wait_for(lambda: not processes_of(run_dir), 60, "every role process to end", 0.5)
    stopped_after = time.monotonic() - marked

    assert home.wait_for_run(dag_id, run_id, timeout=120) == "failed"
    assert stopped_after < 60
    assert {r["reason"] for r in exit_records(run_dir).values()} == {"stopped"}
    teardown = [r for r in home.tasks(dag_id, run_id) if r.task_id.endswith(".stop")]
    assert [r.state for r in teardown] == ["failed"]


@pytest.mark.timeout(400)
def test_a_run_marked_failed_while_training_ends_failed(
    scheduler: tuple[AirflowHome, str],
) -> None:
    """Marking the run failed skips the task after the step, which alone would make the run
    a success (Airflow judges a run by its leaves and still runs its teardowns); the teardown
    stops the roles, then fails the run since training did not finish."""
    home, url = scheduler
    dag_id = "tfdist_hold"
    run_id, handle, logs = hold_run(home, url)

    api(url, "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
    state = home.wait_for_run(dag_id, run_id, timeout=120)

    rows = {r.task_id: r.state for r in home.tasks(dag_id, run_id)}
    assert (rows["after_training"], rows["train_and_evaluate.stop"]) == ("skipped", "failed")
    assert state == "failed"
    assert not processes_of(Path(handle.job_id))
    (stop_log,) = logs.glob("task_id=train_and_evaluate.stop/*.log")
    assert "the training step did not finish: " in stop_log.read_text()


# -- the run shapes the job ----------------------------------------------------------------


def watched_roles(home: AirflowHome, dag_id: str, run_id: str) -> dict[str, str | None]:
    """Each watch task of the run: its label (the role it follows) and state."""
    return {
        str(row.rendered_map_index): row.state
        for row in home.tasks(dag_id, run_id)
        if row.task_id.endswith(".watch")
    }


@pytest.mark.timeout(400)
def test_a_run_sized_by_its_params_watches_every_role_it_launched(
    scheduler: tuple[AirflowHome, str],
) -> None:
    """The spec says one worker; the run asks for three: three worker tasks follow them."""
    home, url = scheduler
    dag_id = "tfdist_sized"
    unpause_when_parsed(url, dag_id)
    body = {"logical_date": None, "conf": {"workers": 3}}
    run_id = api(url, "POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    assert home.wait_for_run(dag_id, run_id, timeout=300) == "success"

    ((handle, _),) = launched(home, dag_id, run_id)
    assert handle.roles == ("chief-0", "worker-0", "worker-1", "worker-2")
    assert watched_roles(home, dag_id, run_id) == dict.fromkeys(handle.roles, "success")


@pytest.mark.timeout(500)
def test_a_backfill_runs_past_dates_at_their_own_sizes(
    scheduler: tuple[AirflowHome, str],
) -> None:
    home, url = scheduler
    dag_id = "tfdist_sized"
    unpause_when_parsed(url, dag_id)
    for date, workers in (("2026-01-02", 2), ("2026-01-03", 0)):
        before = len(finished_runs(home, dag_id))

        def created(date: str = date, workers: int = workers) -> bool:
            result = home.airflow(
                "backfill", "create", "--dag-id", dag_id, "--from-date", date, "--to-date",
                date, "--dag-run-conf", json.dumps({"workers": workers}), timeout=120,
            )  # fmt: skip
            if "AlreadyRunningBackfill" in result.stderr:  # until the scheduler closes it
                return False
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
            return True

        wait_for(created, 120, f"a backfill of {date} to be created", 2)
        wait_for(
            lambda n=before: len(finished_runs(home, dag_id)) > n, 300, f"the run of {date}", 2
        )

    sizes = {}
    for run_id, state in home.runs(dag_id):
        if run_id.startswith("backfill__"):
            assert state == "success", run_id
            ((handle, _),) = launched(home, dag_id, run_id)
            assert watched_roles(home, dag_id, run_id) == dict.fromkeys(handle.roles, "success")
            sizes[run_id[len("backfill__") : len("backfill__") + 10]] = handle.roles
    assert sizes == {
        "2026-01-02": ("chief-0", "worker-0", "worker-1"),
        "2026-01-03": ("chief-0",),
    }


@pytest.mark.timeout(400)
def test_a_launch_task_killed_after_the_roles_started_never_yields_two_gangs(
    scheduler: tuple[AirflowHome, str],
) -> None:
    """The chief kills its launch task's process once every role started; the task's retry
    reattaches to the running gang, which then trains to the end."""
    home, url = scheduler
    dag_id = "tfdist_relaunch"
    unpause_when_parsed(url, dag_id)
    run_id = api(url, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    assert home.wait_for_run(dag_id, run_id, timeout=300) == "success"

    ((handle, _),) = launched(home, dag_id, run_id)  # one launch, one run directory
    run_dir = Path(handle.job_id)
    assert "killed the launch task" in (run_dir / "chief-0.log").read_text()
    (launch,) = [row for row in home.tasks(dag_id, run_id) if row.task_id.endswith(".launch")]
    assert (launch.state, launch.try_number) == ("success", 2)
    logs = home.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    (retry_log,) = logs.glob("task_id=train_and_evaluate.launch/attempt=2*.log")
    assert f"reattached to launch {handle.launch_id}" in retry_log.read_text()
    assert watched_roles(home, dag_id, run_id) == {"chief-0": "success", "worker-0": "success"}
    assert {r["exit_code"] for r in exit_records(run_dir).values()} == {0}
