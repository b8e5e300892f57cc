"""The local backend and preemption notices, with real (tiny, TensorFlow-free) role processes:
exit 75 after a notice reads as preempted, and a stop waits the spec's grace period before
SIGKILL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tfdist.backend import JobHandle, RoleState
from tfdist.launch.local import LocalLauncher
from tfdist.lifecycle import PREEMPTED_EXIT_CODE, Ending, RoleEnd
from tfdist.spec import parse_spec


def launch(tmp_path: Path, program: str, grace: int) -> tuple[LocalLauncher, JobHandle]:
    spec = parse_spec(
        {
            "name": "notice",
            "trainer": {"command": [sys.executable, "-c", program]},
            "cluster": {"chief": 1},
            "train_spec": {"max_steps": 1},
            "restart_policy": {"grace_period_secs": grace},
            "model_dir": str(tmp_path / "model"),
        }
    )
    launcher = LocalLauncher(tmp_path / "runs")
    return launcher, launcher.launch(launcher.plan(spec, "notice"))


def ended(launcher: LocalLauncher, handle: JobHandle, timeout: float = 30) -> RoleEnd:
    deadline = time.monotonic() + timeout
    while (status := launcher.statuses(handle)["chief-0"]).end is None:
        assert time.monotonic() < deadline, "the role did not end"
        launcher.wait(handle, ["chief-0"], 0.5)
    assert status.state is RoleState.FAILED
    return status.end


def test_the_runtime_exit_after_a_notice_reads_as_preempted(tmp_path: Path) -> None:
    launcher, handle = launch(tmp_path, f"raise SystemExit({PREEMPTED_EXIT_CODE})", grace=5)
    end = ended(launcher, handle)
    assert (end.ending, end.exit_code) == (Ending.PREEMPTED, PREEMPTED_EXIT_CODE)
    assert end.describe() == "preempted: ended after a preemption notice (SIGTERM)"


def test_another_program_error_is_still_one(tmp_path: Path) -> None:
    launcher, handle = launch(tmp_path, "raise SystemExit(74)", grace=5)
    assert ended(launcher, handle).ending is Ending.PROGRAM_ERROR


@pytest.mark.parametrize("grace", [1, 3])
def test_a_stop_waits_the_grace_period_then_kills(tmp_path: Path, grace: int) -> None:
    """A role that ignores SIGTERM is killed `grace_period_secs` after it, not before."""
    ignoring = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    launcher, handle = launch(tmp_path, ignoring, grace=grace)
    deadline = time.monotonic() + 30
    while "ready" not in launcher.read_log(handle, "chief-0")[0]:
        assert time.monotonic() < deadline, "the role did not start"
        time.sleep(0.1)
    started = time.monotonic()
    launcher.stop(handle)
    took = time.monotonic() - started
    assert grace <= took < grace + 5
    end = launcher.statuses(handle)["chief-0"].end
    # SIGKILLed with its supervisor, and still a stop on request, not a crash
    assert end == RoleEnd(ending=Ending.STOPPED, exit_code=137, detail="stopped")
