"""Goodput from the chief's attempts and the notices, by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdist.goodput import Goodput, PreemptionCost, goodput, measure
from tfdist.records import NoticeRecord, TrainAttempt, attempt_name
from tfdist.storage import LocalStorage


def attempt(
    started: float, resumed: int, training: float, last: int, last_at: float, launch: str = "l1"
) -> TrainAttempt:
    return TrainAttempt(
        launch_id=launch,
        started_at=started,
        resumed_step=resumed,
        training_at=training,
        last_step=last,
        last_step_at=last_at,
    )


def notice(role: str, at: float, launch: str = "l1") -> NoticeRecord:
    return NoticeRecord(role=role, launch_id=launch, received_at=at, grace_secs=25)


def test_an_undisturbed_run_is_startup_then_training() -> None:
    result = goodput([attempt(100, 0, 110, 1000, 160)], [], launched_at=98, ended_at=161)
    assert result == Goodput(
        wall_secs=63,
        productive_secs=50,
        admission_secs=2,
        startup_secs=10,
        restart_secs=0,
        recompute_secs=0,
        steps=1000,
        attempts=1,
    )
    assert result.summary().startswith("goodput 79% of 63.0 s: training 50.0 s, startup 10.0 s")


def test_a_crash_costs_the_restart_and_the_steps_after_the_last_checkpoint() -> None:
    """10 steps/s; the chief dies at step 300 (last checkpoint 200), the next one trains from
    200 12 s later: 10 s of recomputation and 12 s of restart, blamed on a crash."""
    runs = [attempt(0, 0, 0, 300, 30), attempt(35, 200, 42, 500, 72)]
    result = goodput(runs, [], ended_at=72)
    assert (result.productive_secs, result.recompute_secs, result.restart_secs) == (50, 10, 12)
    assert result.lost_by_role == {"crash": 22}
    assert result.preemptions == ()


def test_a_notice_to_a_ps_saved_at_the_step_reached_costs_only_the_restart() -> None:
    """The chief saved step 300 for ps-0's notice at t=29.5 and resumed from it."""
    runs = [attempt(0, 0, 0, 300, 30), attempt(35, 300, 42, 500, 62)]
    result = goodput(runs, [notice("ps-0", 29.5)], ended_at=62)
    assert result.recompute_secs == 0
    assert result.lost_by_role == {"ps": 12}
    assert result.preemptions == (
        PreemptionCost(
            role="ps-0",
            received_at=29.5,
            steps_before=295,
            resumed_from=300,
            steps_lost=0,
            secs_lost=12,
        ),
    )


def test_the_stop_of_a_restart_is_no_preemption() -> None:
    """Every role gets SIGTERM when the job restarts (t=31) and when it ends (t=63)."""
    runs = [attempt(0, 0, 0, 300, 30), attempt(35, 300, 42, 500, 62)]
    ended = [runs[0].model_copy(update={"ended_at": 30.5}), runs[1]]
    stops = [notice("worker-0", 31), notice("worker-1", 63)]
    result = goodput(ended, [notice("ps-0", 29.5), *stops], ended_at=62)
    assert [cost.role for cost in result.preemptions] == ["ps-0"]


def test_the_notices_a_run_ended_with_resumed_nothing_and_are_no_preemption() -> None:
    """A user stops the run at t=50: every role gets SIGTERM at once, the chief saves step 500
    and ends; nothing starts again. Only the worker's notice at t=10 was a preemption."""
    last = attempt(0, 0, 0, 500, 50).model_copy(update={"ended_at": 51, "end": "preempted"})
    stop = [notice(role, 50) for role in ("chief-0", "worker-0", "ps-0")]
    result = goodput([last], [notice("worker-0", 10), *stop], ended_at=52)
    assert [(c.role, c.received_at) for c in result.preemptions] == [("worker-0", 10)]
    assert "chief-0 preempted" not in result.summary()
    finished = last.model_copy(update={"end": "finished"})  # a notice just before the end
    assert len(goodput([finished], stop[1:2], ended_at=52).preemptions) == 1


def test_a_restart_is_charged_to_the_notice_just_before_it_not_an_earlier_one() -> None:
    """worker-0's notice at t=10 restarted nothing; chief-0's at t=29.5 restarted the job."""
    runs = [attempt(0, 0, 0, 300, 30), attempt(35, 300, 42, 500, 62)]
    notices = [notice("worker-0", 10), notice("chief-0", 29.5)]
    result = goodput(runs, notices, ended_at=62)
    assert result.lost_by_role == {"chief": 12}
    assert [(c.role, c.resumed_from, c.secs_lost) for c in result.preemptions] == [
        ("worker-0", 100, 0),
        ("chief-0", 300, 12),
    ]


def test_a_notified_worker_restarts_nothing_and_loses_no_step() -> None:
    result = goodput([attempt(0, 0, 0, 1000, 100)], [notice("worker-1", 50)], ended_at=100)
    assert result.lost_by_role == {}
    assert result.preemptions == (
        PreemptionCost(
            role="worker-1",
            received_at=50,
            steps_before=500,
            resumed_from=500,
            steps_lost=0,
            secs_lost=0,
        ),
    )


def test_no_attempt_is_an_error() -> None:
    with pytest.raises(ValueError, match="never started training"):
        goodput([], [])


def test_measure_reads_one_launch_and_writes_goodput_json(tmp_path: Path) -> None:
    storage, model_dir = LocalStorage(), str(tmp_path)
    for run in (attempt(0, 0, 0, 100, 10), attempt(500, 0, 501, 50, 505, launch="old")):
        storage.write_text(attempt_name(model_dir, run.started_at), run.model_dump_json())
    result = measure(storage, model_dir, "l1", ended_at=10)
    assert result is not None and result.steps == 100 and result.attempts == 1
    written = (tmp_path / "tfdist" / "goodput.json").read_text()
    assert Goodput.model_validate_json(written) == result
    assert measure(storage, model_dir, "never-launched") is None
