"""The supervisor's warm standby (`--standby FIFO`), with a small stand-in for
`tfdist.runtime.standby` (no TensorFlow): real processes, a real FIFO.

A launcher hands the role over by writing the role's log path into the FIFO; it can open the
FIFO only while the standby's supervisor holds it open.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

# Becomes the role it is handed; with STANDBY_FAILS=<path>, fails instead once that exists.
STANDBY = """
import os, sys, time
if os.environ.get("STANDBY_FAILS"):
    while not os.path.exists(os.environ["STANDBY_FAILS"]):
        time.sleep(0.05)
    sys.exit(4)
log = sys.stdin.readline().strip()
with open(log, "a") as out:
    out.write(f"took over as {os.getpid()}\\n")
sys.exit(5)
"""


@pytest.fixture
def standby(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[psutil.Popen]:
    fifo = tmp_path / "role.standby.fifo"
    os.mkfifo(fifo)
    fails = {"STANDBY_FAILS": str(tmp_path / "fail")} if getattr(request, "param", False) else {}
    env = {**os.environ, **fails}
    argv = ["--exit-file", str(tmp_path / "role.exit"), "--standby", str(fifo)]
    command = [sys.executable, "-c", STANDBY]
    process = psutil.Popen(
        [sys.executable, "-m", "tfdist.launch.supervise", *argv, "--", *command],
        env=env,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):  # the supervisor's group, if anything is left of it
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def hand_over(tmp_path: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            writer = os.open(tmp_path / "role.standby.fifo", os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:  # ENXIO: no supervisor holds it open yet
            assert time.monotonic() < deadline, "the standby never opened its FIFO"
            time.sleep(0.05)
    os.write(writer, f"{tmp_path / 'role.log'}\n".encode())
    os.close(writer)


def exit_record(tmp_path: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((tmp_path / "role.exit").read_text())
    return record


def test_a_standby_handed_the_role_runs_it_under_its_supervisor(
    tmp_path: Path, standby: psutil.Popen
) -> None:
    hand_over(tmp_path)
    assert standby.wait(timeout=30) == 5
    record = exit_record(tmp_path)
    assert (record["exit_code"], record["reason"]) == (5, "exited")
    (line,) = (tmp_path / "role.log").read_text().splitlines()
    assert line.startswith("took over as ")


def test_a_standby_stopped_before_it_was_needed_leaves_no_exit_record(
    tmp_path: Path, standby: psutil.Popen
) -> None:
    deadline = time.monotonic() + 30
    while not standby.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = standby.children()
    os.killpg(standby.pid, signal.SIGTERM)
    assert standby.wait(timeout=30) == 0
    child.wait(timeout=10)
    assert not (tmp_path / "role.exit").exists()
    assert not (tmp_path / "role.log").exists()


@pytest.mark.parametrize("standby", [True], indirect=True)
def test_a_standby_that_fails_once_handed_the_role_fails_the_role(
    tmp_path: Path, standby: psutil.Popen
) -> None:
    hand_over(tmp_path)
    (tmp_path / "fail").touch()
    assert standby.wait(timeout=30) == 4
    record = exit_record(tmp_path)
    assert (record["exit_code"], record["reason"]) == (4, "exited")


@pytest.mark.parametrize("standby", [True], indirect=True)
def test_a_standby_that_ended_before_it_was_needed_is_not_the_role(
    tmp_path: Path, standby: psutil.Popen
) -> None:
    (tmp_path / "fail").touch()
    assert standby.wait(timeout=30) == 0
    assert not (tmp_path / "role.exit").exists()
    with pytest.raises(OSError):  # ENXIO: the launcher starts the role anew instead
        os.open(tmp_path / "role.standby.fifo", os.O_WRONLY | os.O_NONBLOCK)
