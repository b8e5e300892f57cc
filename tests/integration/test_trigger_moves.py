"""A watch task's trigger that moves to another triggerer leaves its role running.

Airflow 3.3 cancels a trigger "by user action", and so calls its `on_kill`, also when the
trigger was reassigned to another triggerer (the first one missed its heartbeats). Here, with a
real scheduler and two real triggerers: the first is frozen (SIGSTOP, with its trigger runner)
until the second takes its triggers over, then thawed, so that it cancels them. Every role must
still run afterwards. Marking a watch task failed, which must stop its role, is
`test_backfill.py::test_a_run_marked_failed_leaves_no_role_running`.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from airflow_home import AIRFLOW, AirflowHome
from jobtools import wait_for
from test_backfill import api, hold_run

from tfdist.backend import RoleState
from tfdist.launch.local import LocalLauncher

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"
THRESHOLD_SECS = 10  # a triggerer silent this long is considered gone


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[AirflowHome, str]]:
    home = AirflowHome(tmp_path)
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"] = str(THRESHOLD_SECS)
    home.migrate()
    with home.standalone() as url:
        yield home, url


def triggerer_tree(home: AirflowHome) -> list[psutil.Process]:
    """The standalone's triggerer and its trigger runner."""
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if "triggerer" in cmdline and (process.info["environ"] or {}).get(
                "AIRFLOW_HOME"
            ) == str(home.home):
                return [process, *process.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError("no triggerer runs")


def trigger_owners(home: AirflowHome) -> set[int | None]:
    with sqlite3.connect(home.home / "airflow.db") as db:
        return {row[0] for row in db.execute("SELECT triggerer_id FROM trigger")}


@pytest.mark.timeout(600)
def test_a_trigger_moved_to_another_triggerer_leaves_its_role_running(
    scheduler: tuple[AirflowHome, str],
) -> None:
    home, url = scheduler
    dag_id = "tfdist_hold"
    run_id, handle, logs = hold_run(home, url)
    launcher = LocalLauncher(home.root / "runs")
    first = triggerer_tree(home)
    (owner,) = trigger_owners(home)

    for process in first:
        process.send_signal(signal.SIGSTOP)
    second = subprocess.Popen(
        [AIRFLOW, "triggerer"],
        env=home.env,
        stdout=(home.root / "second-triggerer.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: trigger_owners(home) not in ({owner}, set()), 120, "the triggers to move", 1
        )
        moved_at = time.monotonic()
        for process in first:
            process.send_signal(signal.SIGCONT)

        def cancelled_by_the_first() -> bool:
            return any(
                "its watch task is deferred: the role goes on" in path.read_text()
                for path in logs.glob("task_id=*.watch/map_index=*/*")
            )

        wait_for(cancelled_by_the_first, 60, "the first triggerer to cancel its triggers", 1)
        time.sleep(max(0.0, 5 - (time.monotonic() - moved_at)))
        statuses = launcher.statuses(handle)
        assert {role: s.state for role, s in statuses.items()} == dict.fromkeys(
            handle.roles, RoleState.RUNNING
        )
        rows = [r for r in home.tasks(dag_id, run_id) if r.task_id.endswith(".watch")]
        assert {r.state for r in rows} == {"deferred"}
    finally:
        for process in first:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
        api(url, "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
        second.terminate()
        second.wait(timeout=60)
    assert home.wait_for_run(dag_id, run_id, timeout=120) == "failed"
