"""The role supervisor's exit record: exit code and reason, from a real child process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tfdist.launch import supervise


def _supervise(tmp_path: Path, code: str, parent: int | None) -> dict[str, object]:
    exit_file = tmp_path / "role.exit"
    argv = ["--exit-file", str(exit_file)]
    if parent is not None:
        argv += ["--parent", str(parent)]
    supervise.main([*argv, "--", sys.executable, "-c", code])
    record: dict[str, object] = json.loads(exit_file.read_text())
    return record


def test_a_role_that_ends_on_its_own_exited(tmp_path: Path) -> None:
    record = _supervise(tmp_path, "raise SystemExit(3)", parent=os.getppid())
    assert (record["exit_code"], record["reason"]) == (3, "exited")


def test_a_role_that_ends_after_its_launcher_died_is_recorded_as_launcher_gone(
    tmp_path: Path,
) -> None:
    """Once the launcher is gone, every role's record says so, however quickly the role ended
    (a peer stopped for that reason often makes it fail before its supervisor looks)."""
    not_our_parent = os.getppid() + 1
    record = _supervise(tmp_path, "raise SystemExit(1)", parent=not_our_parent)
    assert (record["exit_code"], record["reason"]) == (1, "launcher gone")


def test_a_role_killed_by_a_signal_reports_128_plus_the_signal(tmp_path: Path) -> None:
    record = _supervise(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", None)
    assert (record["exit_code"], record["reason"]) == (137, "exited")
