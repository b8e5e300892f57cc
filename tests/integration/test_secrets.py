"""A credential in `trainer.env` reaches the role, and nothing Airflow keeps: a real run through
`airflow standalone` (LocalExecutor, SQLite) of `dags/secret_overrides.py`, whose trainer gets
the value of an Airflow Variable through a templated override. The Variable comes from a secrets
backend (the environment, `AIRFLOW_VAR_*`), so the run is the only way into the database."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from airflow_home import AirflowHome
from jobtools import wait_for

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"
DAG_ID = "tfdist_secret_overrides"
LAUNCH = "train_and_evaluate.launch"
SECRET = "tfdist-extra-credential-7c1d"


def api(url: str, method: str, path: str, body: object | None = None) -> Any:
    request = urllib.request.Request(
        f"{url}/api/v2{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def unpaused(url: str) -> bool:
    try:
        api(url, "PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    except urllib.error.HTTPError:
        return False  # not parsed yet
    return True


def why_failed(home: AirflowHome, run_id: str) -> str:
    """Each task that did not succeed, with the end of its latest log."""
    lines = []
    for task in home.tasks(DAG_ID, run_id):
        if task.state != "success":
            logs = sorted(home.home.joinpath("logs").glob(f"**/task_id={task.task_id}/**/*.log"))
            tail = logs[-1].read_text(errors="replace")[-1500:] if logs else "(no log)"
            lines.append(f"{task.task_id}[{task.map_index}] {task.state} try {task.try_number}")
            lines.append(tail)
    return "\n".join(lines)


@pytest.mark.timeout(420)
def test_a_templated_trainer_env_value_is_masked_wherever_airflow_keeps_it(
    tmp_path: Path,
) -> None:
    home = AirflowHome(tmp_path)
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.env["AIRFLOW_VAR_TRAINER_EXTRA"] = SECRET
    home.migrate()
    with home.standalone() as url:
        wait_for(lambda: unpaused(url), 180, f"{DAG_ID} to be parsed", interval=2)
        run_id = api(url, "POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]
        state = home.wait_for_run(DAG_ID, run_id, timeout=240)
        # What the launch task's Rendered Templates tab shows.
        shown = api(url, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{LAUNCH}")

    assert state == "success", why_failed(home, run_id)
    [received] = home.base_dir.glob("**/extra.sha256")  # the role got the real value
    assert received.read_text() == hashlib.sha256(SECRET.encode()).hexdigest()
    assert shown["rendered_fields"]["overrides"] == {"trainer.env.EXTRA": "***"}
    with sqlite3.connect(home.home / "airflow.db") as db:
        [(stored,)] = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id=? AND run_id=? AND task_id=?",
            (DAG_ID, run_id, LAUNCH),
        ).fetchall()
    assert json.loads(stored)["overrides"] == {"trainer.env.EXTRA": "***"}

    database = list(home.home.glob("airflow.db*"))  # with any journal SQLite left
    logs = [
        *home.home.joinpath("logs").rglob("*.log"),
        *(tmp_path / "runs").rglob("*.log"),
        tmp_path / "standalone.log",
    ]
    task_logs = {part for path in logs for part in path.parts if part.startswith("task_id=")}
    assert {f"task_id={LAUNCH}", "task_id=train_and_evaluate.watch"} <= task_logs
    written = "".join(path.read_text(errors="replace") for path in logs)
    assert f"EXTRA has {len(SECRET)} characters" in written
    leaked = [path for path in [*database, *logs] if SECRET.encode() in path.read_bytes()]
    assert leaked == []
