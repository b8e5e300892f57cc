"""The evaluator's loop on a simulated model directory and clock: which checkpoints it
evaluates, when, and after which one it stops (the estimator's evaluator semantics)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from tfdist.records import EvalRecord
from tfdist.runtime.eval_loop import CheckpointGone, follow_checkpoints, is_final

EVAL_SECS = 1.0  # how long one evaluation takes on the simulated clock
GIVE_UP_SECS = 10_000.0  # a loop that never stops fails the test instead of hanging it


@dataclass
class ModelDir:
    """Checkpoints that the chief writes at given times; the clock moves only when the
    evaluator sleeps or evaluates."""

    written: dict[str, tuple[float, int]]  # path -> (time written, step)
    deleted: set[str] = field(default_factory=set)
    now: float = 0.0
    evaluated: list[tuple[float, str]] = field(default_factory=list)

    def latest(self) -> str | None:
        visible = [(at, step, path) for path, (at, step) in self.written.items() if at <= self.now]
        return max(visible)[2] if visible else None

    def step(self, path: str) -> int:
        if path in self.deleted:
            raise CheckpointGone(path)
        return self.written[path][1]

    def sleep(self, secs: float) -> None:
        assert secs > 0
        self.now += secs
        if self.now > GIVE_UP_SECS:
            raise AssertionError(f"the evaluator never stopped; it evaluated {self.evaluated}")

    def monotonic(self) -> float:
        return self.now

    def evaluate(self, path: str) -> EvalRecord:
        step = self.step(path)
        self.evaluated.append((self.now, path))
        self.now += EVAL_SECS
        return EvalRecord(
            global_step=step,
            metrics={"loss": 1.0 / step},
            checkpoint_path=path,
            timestamp=self.now,
            eval_steps=1,
        )

    def follow(
        self,
        *,
        max_steps: int | None = 40,
        done: set[int] | None = None,
        start_delay_secs: float = 0.0,
        throttle_secs: float = 0.0,
    ) -> EvalRecord | None:
        return follow_checkpoints(
            self,
            self.evaluate,
            done=set() if done is None else done,
            max_steps=max_steps,
            start_delay_secs=start_delay_secs,
            throttle_secs=throttle_secs,
            sleep=self.sleep,
            monotonic=self.monotonic,
        )


def checkpoints(*steps_at: tuple[int, float]) -> dict[str, tuple[float, int]]:
    return {f"/m/ckpt-{step}": (at, step) for step, at in steps_at}


def test_each_new_checkpoint_is_evaluated_and_the_one_at_max_steps_is_the_last() -> None:
    """An intermediate checkpoint, then a later one: both are evaluated, in order, and the
    loop stops after the checkpoint at max_steps, not before."""
    model_dir = ModelDir(checkpoints((20, 0.0), (40, 5.0), (60, 9.0)))

    record = model_dir.follow(max_steps=40)

    assert [path for _, path in model_dir.evaluated] == ["/m/ckpt-20", "/m/ckpt-40"]
    assert record is not None and record.global_step == 40
    assert model_dir.evaluated[1][0] == pytest.approx(5.0, abs=0.6)  # found within a poll


def test_a_checkpoint_past_max_steps_is_final_too() -> None:
    model_dir = ModelDir(checkpoints((30, 0.0), (45, 3.0)))

    record = model_dir.follow(max_steps=40)

    assert record is not None and record.global_step == 45
    assert [path for _, path in model_dir.evaluated] == ["/m/ckpt-30", "/m/ckpt-45"]


def test_no_checkpoint_yet_waits_for_the_first() -> None:
    model_dir = ModelDir(checkpoints((40, 12.0)))

    record = model_dir.follow()

    assert record is not None and record.global_step == 40
    assert model_dir.evaluated[0][0] == pytest.approx(12.0, abs=0.6)


def test_the_start_delay_comes_first_and_then_only_the_newest_is_evaluated() -> None:
    model_dir = ModelDir(checkpoints((10, 0.0), (20, 1.0), (30, 2.0), (40, 50.0)))

    model_dir.follow(start_delay_secs=5.0)

    assert model_dir.evaluated == [(5.0, "/m/ckpt-30"), (50.0, "/m/ckpt-40")]


def test_evaluations_start_at_most_once_per_throttle_secs_on_the_newest_checkpoint() -> None:
    """Checkpoints every 2 s, throttle 10 s: the checkpoints written while it waits are
    skipped for the newest one."""
    model_dir = ModelDir(checkpoints(*((step, step / 10) for step in range(20, 220, 20))))

    record = model_dir.follow(max_steps=200, throttle_secs=10.0)

    starts = [at for at, _ in model_dir.evaluated]
    assert [path for _, path in model_dir.evaluated] == [
        "/m/ckpt-20",
        "/m/ckpt-120",
        "/m/ckpt-200",
    ]
    assert all(later - earlier >= 10.0 for earlier, later in itertools.pairwise(starts))
    assert starts[1] == pytest.approx(12.0, abs=0.6)  # no longer than the throttle asks
    assert record is not None and record.global_step == 200


def test_checkpoints_already_evaluated_are_not_evaluated_again() -> None:
    """A restarted evaluator: steps with a record are skipped; the next new one is taken."""
    model_dir = ModelDir(checkpoints((20, 0.0), (40, 30.0)))
    done = {20}

    record = model_dir.follow(done=done)

    assert [path for _, path in model_dir.evaluated] == ["/m/ckpt-40"]
    assert model_dir.evaluated[0][0] >= 30.0
    assert record is not None and done == {20, 40}


def test_a_restarted_evaluator_with_the_final_record_does_nothing() -> None:
    model_dir = ModelDir(checkpoints((40, 0.0)))

    assert model_dir.follow(done={20, 40}, start_delay_secs=100.0) is None
    assert model_dir.evaluated == [] and model_dir.now == 0.0


def test_a_checkpoint_deleted_before_it_was_read_is_skipped_for_the_newest() -> None:
    model_dir = ModelDir(checkpoints((20, 0.0), (40, 0.0)), deleted={"/m/ckpt-40"})
    calls = 0
    latest = model_dir.latest

    def chief_writes_60_after_deleting_40() -> str | None:
        nonlocal calls
        calls += 1
        if calls == 2:
            model_dir.written.update(checkpoints((60, model_dir.now)))
        return latest()

    model_dir.latest = chief_writes_60_after_deleting_40  # type: ignore[method-assign]

    record = model_dir.follow(max_steps=60)

    assert [path for _, path in model_dir.evaluated] == ["/m/ckpt-60"]
    assert record is not None and record.global_step == 60


def test_without_max_steps_the_evaluator_never_stops_by_itself() -> None:
    model_dir = ModelDir(checkpoints(*((step, step) for step in (10, 20, 1_000_000))))

    with pytest.raises(AssertionError, match="never stopped"):
        model_dir.follow(max_steps=None)

    assert [path for _, path in model_dir.evaluated][:2] == ["/m/ckpt-10", "/m/ckpt-20"]


@pytest.mark.parametrize(
    ("step", "max_steps", "final"),
    [(39, 40, False), (40, 40, True), (41, 40, True), (10**9, None, False)],
)
def test_is_final(step: int, max_steps: int | None, final: bool) -> None:
    assert is_final(step, max_steps) is final
