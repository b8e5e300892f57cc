"""Scheduling one chunk of training steps on a parameter-server cluster's coordinator.

A chunk is the steps up to the next checkpoint. They are scheduled with at most `ahead` of
them not yet run, then waited for; what each step returned is read back on the chief.

One fault of TensorFlow's own is survived here. In TF 2.21 the chief's
`EagerClusterFunctionLibraryRuntime::Run` (tensorflow/core/distributed_runtime/eager/
cluster_function_library_runtime.cc) keeps a pointer into its `function_data_` vector after
releasing the lock, while an `Instantiate` on another thread may grow that vector. The chief
then sends a worker a component function whose device name is freed memory: the chief logs
"contains invalid UTF-8 data when serializing", the worker answers "Unable to parse request",
and the coordinator raises `InternalError`. Workers instantiate their functions when they first
run a step, so it strikes at start, and rarely: once in about 170 parameter-server starts in
this project's tests. The worker ran nothing it could not parse, so the failed step is
scheduled again, as the coordinator's contract after a failed `join` has it. When the fault hit
reading a step's output back, that step's update was applied already and is applied once more
than counted, which asynchronous training absorbs; the step count stays exact. A `FaultBudget`
bounds how often.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

log = logging.getLogger("tfdist.train")


class FaultBudget:
    """How many transport faults a process survives, each logged as a warning."""

    def __init__(self, limit: int = 3):
        self.limit, self.seen = limit, 0

    def survive(self, error: Exception) -> bool:
        if not is_transport_fault(error) or self.seen >= self.limit:
            return False
        self.seen += 1
        log.warning(
            "a step failed in TensorFlow's transport, not in the model: a worker could not "
            "parse the chief's request; scheduling it again (%d of %d such faults survived)",
            self.seen,
            self.limit,
        )
        return True


def is_transport_fault(error: Exception) -> bool:
    """A step that failed because the chief sent a worker a request it could not parse."""
    return isinstance(error, tf.errors.InternalError) and "Unable to parse request" in str(error)


def run_chunk(
    coordinator: Any,
    schedule: Callable[[], Any],
    size: int,
    *,
    stop: Callable[[], bool],
    ahead: int,
    on_output: Callable[[int, Any], None],
    faults: FaultBudget,
) -> tuple[int, list[Any]]:
    """Run up to `size` steps (fewer once `stop()` is true): the number that ran, and the
    outputs that could be read. `on_output(n, output)` sees the output of the chunk's step `n`
    while later ones run."""
    ran = 0
    outputs: list[Any] = []
    while True:
        results: list[Any] = []
        try:
            while ran + len(results) < size and not stop():
                results.append(schedule())
                if len(results) > ahead:  # wait for the step `ahead` before this one
                    _, early = _ran(results[-ahead - 1 : -ahead])
                    for output in early:
                        on_output(ran + len(results) - ahead, output)
            coordinator.join()
            done = True
        except tf.errors.InternalError as error:
            # Raising it, the coordinator waited for the steps in flight and cancelled the rest.
            if not faults.survive(error):
                raise
            done = False
        count, read = _ran(results)
        ran, outputs = ran + count, outputs + read
        if done:
            return ran, outputs


def _ran(results: list[Any]) -> tuple[int, list[Any]]:
    """How many of these scheduled steps ran, and what they returned where it can still be read.
    A worker that left after running a step takes its output along (the step itself is done);
    a step cancelled, or failed by a transport fault, did not run and is not counted."""
    count, outputs = 0, []
    for result in results:
        try:
            outputs.append(result.fetch())
        except tf.errors.UnavailableError:
            pass
        except tf.errors.CancelledError:
            continue
        except tf.errors.InternalError as error:
            if is_transport_fault(error):
                continue
            raise
        count += 1
    return count, outputs
