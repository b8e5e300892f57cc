"""The evaluator's loop, without TensorFlow: which checkpoint to evaluate, when, and when to stop.

The estimator's contract: wait `start_delay_secs`, then evaluate the newest checkpoint that has
no record yet, starting evaluations at most once per `throttle_secs` (intermediate checkpoints
are skipped when a newer one arrived meanwhile), and stop after evaluating the checkpoint whose
step is at least `max_steps`. `tfdist.runtime.evaluate` runs it against a model directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from tfdist.records import EvalRecord

log = logging.getLogger("tfdist.evaluate")

POLL_SECS = 0.5


class CheckpointGone(Exception):
    """The checkpoint was deleted before it was read: the chief keeps only the newest few."""


class Checkpoints(Protocol):
    """A model directory's checkpoints, as the evaluator sees them."""

    def latest(self) -> str | None:
        """The newest checkpoint's path, or None before the first one."""
        ...

    def step(self, path: str) -> int:
        """The global step a checkpoint was saved at; raises `CheckpointGone`."""
        ...


def is_final(step: int, max_steps: int | None) -> bool:
    """Whether the checkpoint at `step` is the last one to evaluate (never, without max_steps)."""
    return max_steps is not None and step >= max_steps


def follow_checkpoints(
    checkpoints: Checkpoints,
    evaluate: Callable[[str], EvalRecord],
    *,
    done: set[int],
    max_steps: int | None,
    start_delay_secs: float,
    throttle_secs: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    poll_secs: float = POLL_SECS,
) -> EvalRecord | None:
    """Evaluate new checkpoints until the final one; return its record.

    :param evaluate: evaluates one checkpoint and writes its record; raises `CheckpointGone`.
    :param done: the steps that already have a record (a restarted evaluator skips them);
        updated in place. None is returned when the final step is among them.
    """
    if done and is_final(max(done), max_steps):
        log.info("the checkpoint at step %d is already evaluated; nothing to do", max(done))
        return None
    if start_delay_secs:
        log.info("waiting start_delay_secs=%s", start_delay_secs)
        sleep(start_delay_secs)
    last_started = float("-inf")
    while True:
        latest = checkpoints.latest()
        try:
            if latest is None or checkpoints.step(latest) in done:
                sleep(poll_secs)
                continue
            wait = throttle_secs - (monotonic() - last_started)
            if wait > 0:
                sleep(min(wait, poll_secs))
                continue  # look again: a newer checkpoint may have arrived while we waited
            last_started = monotonic()
            record = evaluate(latest)
        except CheckpointGone:
            log.info("%s was deleted before it could be evaluated; taking the latest", latest)
            continue
        done.add(record.global_step)
        if is_final(record.global_step, max_steps):
            return record
