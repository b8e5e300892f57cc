"""`make ui` stops on Ctrl-C within 10 s, leaving no process and no port behind.

The wrapper (`python -m tfdist_airflow.ui`) is started as a terminal starts a foreground job and
gets SIGINT as Ctrl-C sends it: once around a scripted process tree that resists (an orphan in
a session of its own, a process that ignores SIGTERM), once around a real `airflow standalone`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from airflow_home import AirflowHome, _free_port

pytestmark = pytest.mark.integration

STOP_WITHIN_SECS = 10.0
TREE = """
import json, os, signal, subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
stubborn = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
# an orphan: started in a session of its own by a process that then exits, as a role is
parent = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys; p = subprocess.Popen(sys.argv[1:], start_new_session=True, "
    "stdout=subprocess.DEVNULL); "
    "print(p.pid)", *sleeper], stdout=subprocess.PIPE, text=True)
orphan = int(parent.communicate()[0])
holder = subprocess.Popen(stubborn)
with open(sys.argv[1], "w") as out:
    json.dump([orphan, holder.pid, os.getpid()], out)
time.sleep(600)
"""


def wrapper(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tfdist_airflow.ui", *command],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own foreground group, as in a terminal
        )


def ctrl_c(process: subprocess.Popen[bytes]) -> float:
    """SIGINT to the job's process group, as the terminal sends it; seconds until it ended."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_WITHIN_SECS + 20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return time.monotonic() - started


def alive(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def port_free(port: int) -> bool:
    """Whether a server could listen on `port` again (as `make ui` does on a restart: with
    SO_REUSEADDR, so the probes' connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_ctrl_c_stops_orphans_and_processes_that_ignore_sigterm(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    command = [sys.executable, "-c", TREE, str(pids_file)]
    process = wrapper(command, dict(os.environ), tmp_path / "ui.log")
    deadline = time.monotonic() + 60
    while not pids_file.exists() or not pids_file.read_text():
        assert process.poll() is None, (tmp_path / "ui.log").read_text()
        assert time.monotonic() < deadline, "the scripted tree did not start"
        time.sleep(0.1)
    time.sleep(0.2)  # the file is complete once written; give the holder its handler
    pids = json.loads(pids_file.read_text())
    assert alive(pids) == pids
    took = ctrl_c(process)
    assert process.returncode == 130
    assert took < STOP_WITHIN_SECS, took
    assert alive(pids) == []
    assert "stopped in" in (tmp_path / "ui.log").read_text()


def test_ctrl_c_stops_airflow_standalone(tmp_path: Path) -> None:
    home = AirflowHome(tmp_path)
    port = _free_port()
    env = {
        **home.env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    log = tmp_path / "ui.log"
    process = wrapper([], env, log)
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    deadline = time.monotonic() + 240
    while True:  # up, with a scheduler and a triggerer that report themselves healthy
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                health = json.load(response)
            if all(
                health.get(part, {}).get("status") == "healthy"
                for part in ("scheduler", "triggerer")
            ):
                break
        except OSError:
            pass
        time.sleep(1)
    tree = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    assert len(tree) >= 4  # standalone, scheduler, dag-processor, api-server, triggerer, ...
    took = ctrl_c(process)
    assert took < STOP_WITHIN_SECS, (took, log.read_text()[-3000:])
    assert alive(tree) == []
    assert port_free(port)
