"""A chunk of coordinated steps, by value, on a scripted coordinator: which steps count, what
is read back, and which of TensorFlow's errors a chunk survives (`tfdist.runtime.steps`).

The fake coordinator plays `ClusterCoordinator`'s contract: `schedule` returns a remote value
whose `fetch` returns the step's output or raises its error, and `join` raises an error some
step met (by then no step runs any more, and the ones queued are cancelled). Each fake fails at
once when its script runs out."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import tensorflow as tf

from tfdist.runtime.steps import FaultBudget, is_transport_fault, run_chunk

PARSE = (
    "2 root error(s) found.\n  (0) INTERNAL: {{function_node __wrapped__Identity}} Unable to "
    "parse request\nAdditional GRPC error information from remote target /job:worker/replica:0"
)


def transport_fault() -> tf.errors.InternalError:
    return tf.errors.InternalError(None, None, PARSE)


def cancelled() -> tf.errors.CancelledError:
    return tf.errors.CancelledError(None, None, "The corresponding function is cancelled.")


class Remote:
    def __init__(self, outcome: Any):
        self.outcome = outcome

    def fetch(self) -> Any:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Coordinator:
    """`schedule` plays `steps` in order; `join` raises `joins` in order (None: returns)."""

    def __init__(self, steps: list[Any], joins: list[Exception | None]):
        self.steps, self.joins, self.scheduled = list(steps), list(joins), 0

    def schedule(self) -> Remote:
        assert self.steps, "scheduled more steps than the script has"
        self.scheduled += 1
        return Remote(self.steps.pop(0))

    def join(self) -> None:
        assert self.joins, "joined more often than the script has"
        error = self.joins.pop(0)
        if error is not None:
            raise error


def chunk(coordinator: Coordinator, size: int, faults: FaultBudget) -> tuple[int, list[Any]]:
    seen: list[tuple[int, Any]] = []
    result = run_chunk(
        coordinator,
        coordinator.schedule,
        size,
        stop=lambda: False,
        ahead=2,
        on_output=lambda n, output: seen.append((n, output)),
        faults=faults,
    )
    assert all(output == f"out-{n}" for n, output in seen)  # step n's own output, in order
    return result


def test_a_chunk_runs_its_steps_and_reads_back_what_they_returned() -> None:
    coordinator = Coordinator([f"out-{n}" for n in range(1, 6)], [None])
    assert chunk(coordinator, 5, FaultBudget()) == (5, [f"out-{n}" for n in range(1, 6)])


def test_a_step_whose_worker_left_counts_but_returns_nothing() -> None:
    gone = tf.errors.UnavailableError(None, None, "worker-1 is gone")
    coordinator = Coordinator(["out-1", gone, "out-3"], [None])
    assert chunk(coordinator, 3, FaultBudget()) == (3, ["out-1", "out-3"])


def test_a_transport_fault_schedules_the_steps_that_did_not_run_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Step 3 meets the fault, 4 is cancelled; after the failed join, 3 more steps run.
    first = ["out-1", "out-2", transport_fault(), cancelled()]
    coordinator = Coordinator([*first, "a", "b", "c"], [transport_fault(), None])
    faults = FaultBudget()
    with caplog.at_level(logging.WARNING, logger="tfdist.train"):
        ran, outputs = run_chunk(
            coordinator, coordinator.schedule, 5, stop=lambda: False, ahead=8,
            on_output=lambda n, output: None, faults=faults,
        )  # fmt: skip
    assert (ran, outputs) == (5, ["out-1", "out-2", "a", "b", "c"])
    assert coordinator.scheduled == 7 and faults.seen == 1
    assert "a worker could not parse the chief's request" in caplog.text
    assert "(1 of 3 such faults survived)" in caplog.text


def test_other_errors_and_too_many_faults_still_end_the_chief() -> None:
    program = tf.errors.InternalError(None, None, "Dst tensor is not initialized.")
    assert not is_transport_fault(program) and is_transport_fault(transport_fault())
    with pytest.raises(tf.errors.InternalError, match="Dst tensor"):
        chunk(Coordinator(["out-1"], [program]), 1, FaultBudget())
    with pytest.raises(tf.errors.CancelledError):  # cancelled with no fault before it
        chunk(Coordinator(["out-1"], [cancelled()]), 1, FaultBudget())
    spent = FaultBudget(limit=1)
    spent.seen = 1
    with pytest.raises(tf.errors.InternalError, match="Unable to parse request"):
        chunk(Coordinator([transport_fault()], [transport_fault()]), 1, spent)
