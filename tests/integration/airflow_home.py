"""A throwaway Airflow installation for tests: its own AIRFLOW_HOME, SQLite, the repo's DAGs.

Drives the real `airflow` CLI in subprocesses (`dags test`, `standalone` with LocalExecutor)
and reads task instance rows straight from the SQLite metadata database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    map_index: int
    rendered_map_index: str | None
    state: str | None
    start_date: datetime | None
    end_date: datetime | None
    try_number: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


AIRFLOW_PATH = Path(__file__).parent / "airflow_path"


class AirflowHome:
    def __init__(self, root: Path):
        self.root = root
        self.home = root / "airflow"
        self.base_dir = root / "tfdist"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            # Writers wait for SQLite's lock (airflow_path/airflow_sqlite.py, which only that
            # folder on the path makes importable: no test module becomes a trainer).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "airflow_sqlite.CONNECT_ARGS",
            # A task's request to the execution API may wait that long for the lock: its
            # client waits longer (the default 5 s timed out, and a retried start conflicts).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "90",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(AIRFLOW_PATH), os.environ.get("PYTHONPATH")])
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "TFDIST_BASE_DIR": str(self.base_dir),
            "TFDIST_RUN_ROOT": str(root / "runs"),
            # `airflow standalone` starts its components as `airflow ...` from PATH.
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def migrate(self) -> None:
        result = self.airflow("db", "migrate", timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    def dags_test(self, dag_id: str, conf: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return self.airflow("dags", "test", dag_id, "-c", json.dumps(conf))

    def tasks(self, dag_id: str, run_id: str | None = None) -> list[TaskRow]:
        """Task instances of the run (default: the latest run of the DAG)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            if run_id is None:
                row = db.execute(
                    "SELECT run_id FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", (dag_id,)
                ).fetchone()
                run_id = row[0]
            rows = db.execute(
                "SELECT task_id, map_index, rendered_map_index, state, start_date, end_date, "
                "try_number FROM task_instance WHERE dag_id=? AND run_id=?",
                (dag_id, run_id),
            ).fetchall()
        return [
            TaskRow(r[0], r[1], r[2], r[3], _parse_time(r[4]), _parse_time(r[5]), r[6])
            for r in rows
        ]

    def runs(self, dag_id: str) -> list[tuple[str, str]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id", (dag_id,)
            ).fetchall()

    @contextmanager
    def standalone(self) -> Iterator[str]:
        """`airflow standalone` (scheduler, dag-processor, api-server, triggerer) on loopback."""
        port = _free_port()
        env = {
            **self.env,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        }
        try:
            with serving([AIRFLOW, "standalone"], env, self.root / "standalone.log", port) as url:
                yield url
        finally:
            self._kill_airflow_leftovers()

    def _kill_airflow_leftovers(self) -> None:
        """Airflow processes of this home that left the process group (role processes are
        left alone: the tests check that the DAG stopped them)."""
        for leftover in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmdline = " ".join(leftover.info["cmdline"] or [])
                home = (leftover.info["environ"] or {}).get("AIRFLOW_HOME")
                if home == str(self.home) and "airflow" in cmdline and "tfdist" not in cmdline:
                    leftover.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """The state of the run once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = dict(self.runs(dag_id))
            if states.get(run_id) in ("success", "failed"):
                return states[run_id]
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} did not finish within {timeout} s")

    def wait_until_idle(self, dag_id: str, timeout: float = 600) -> None:
        """Until no run of the DAG is queued or running (the schedule may have added one)."""
        deadline = time.monotonic() + timeout
        while any(state in ("queued", "running") for _, state in self.runs(dag_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs of {dag_id} still going after {timeout} s")
            time.sleep(2)


@contextmanager
def serving(command: list[str], env: dict[str, str], log_path: Path, port: int) -> Iterator[str]:
    """Run an Airflow server `command` (its output in `log_path`) until its API on loopback
    `port` answers; yield its URL; then stop its whole process group."""
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"airflow {command[1]} did not come up") from None
                    time.sleep(1)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
