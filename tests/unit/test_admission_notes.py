"""How a watch keeps its launch's wait in a queue in the model directory (real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdist.records import Admission, read_admission
from tfdist.storage import LocalStorage
from tfdist_airflow.admission import QueueNotes

WAITING = Admission(launch_id="l1", queue="q", queued_at=200.0, detail="queued in Kueue (queue q)")
ADMITTED = Admission(launch_id="l1", queue="q", queued_at=100.0, admitted_at=300.0)


def test_a_watch_that_takes_over_keeps_the_start_of_the_wait_it_did_not_see(
    tmp_path: Path,
) -> None:
    first = QueueNotes(str(tmp_path))
    assert first.note("l1", WAITING) is None
    assert read_admission(LocalStorage(), str(tmp_path), "l1") == WAITING
    # Another watch (a restarted triggerer) sees only the admission, with the JobSet's
    # creation time as the start of the wait: the record keeps the start it had.
    second = QueueNotes(str(tmp_path))
    assert second.note("l1", ADMITTED) is None
    kept = read_admission(LocalStorage(), str(tmp_path), "l1")
    assert kept == ADMITTED.model_copy(update={"queued_at": 200.0})


def test_only_a_change_is_written_and_only_by_the_watch_that_writes(tmp_path: Path) -> None:
    notes = QueueNotes(str(tmp_path))
    notes.note("l1", WAITING)
    path = tmp_path / "tfdist" / "admission" / "l1.json"
    path.write_text("{}")  # unreadable if written again
    assert notes.note("l1", WAITING) is None
    assert path.read_text() == "{}"
    silent = QueueNotes(None)
    assert silent.note("l2", WAITING) is None
    assert not (tmp_path / "tfdist" / "admission" / "l2.json").exists()


def test_a_store_that_cannot_be_written_is_said_once_and_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: LocalStorage, path: str, text: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(LocalStorage, "write_text", refuse)
    notes = QueueNotes(str(tmp_path))
    problem = notes.note("l1", WAITING)
    assert problem is not None and problem.startswith(
        f"cannot keep the queue's answer in {tmp_path}"
    )
    assert "PermissionError" in problem
    assert notes.note("l1", ADMITTED) is None  # said once; the watch goes on
