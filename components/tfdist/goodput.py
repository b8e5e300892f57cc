"""Goodput: of a run's wall time, how much trained steps that were kept, and where the rest went.

A pure computation from what the roles leave in `model_dir/tfdist/` (`tfdist.records`): one
`TrainAttempt` per run of the chief and one `NoticeRecord` per preemption notice. Per run:

- productive: the chief trained steps that the next attempt resumed from (or the last kept);
- admission: from the launch to the chief's first process start (Kueue's queue, scheduling);
- startup: the first attempt's start until its first step (imports, servers, restore);
- restarts: from an attempt's last step to the next one's first step, by the role kind whose
  notice caused it (`crash` when no notice did);
- recomputation: steps trained after the checkpoint the next attempt resumed from, trained
  again;

(SIGTERM to every role when the runner restarts or ends the job is no preemption: notices that
come after the chief ended, before it trains again, are left out.)

and per preemption: the step the job had reached at the notice, the step it resumed from, the
steps and seconds lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from tfdist.records import ATTEMPTS_DIR, GOODPUT, NOTICES_DIR, NoticeRecord, TrainAttempt
from tfdist.spec import Frozen
from tfdist.storage import Storage, join

__all__ = ["Goodput", "PreemptionCost", "goodput", "measure"]


class PreemptionCost(Frozen):
    """What one notice cost: `steps_before` the notice, training resumed from `resumed_from`."""

    role: str
    received_at: float
    steps_before: int
    resumed_from: int
    steps_lost: int
    secs_lost: float


class Goodput(Frozen):
    """Seconds of one run, by what they were spent on (see the module docstring)."""

    wall_secs: float
    productive_secs: float
    admission_secs: float
    startup_secs: float
    restart_secs: float
    recompute_secs: float
    lost_by_role: dict[str, float] = Field(default_factory=dict)  # restarts + recomputation
    steps: int  # the step training ended at
    attempts: int
    preemptions: tuple[PreemptionCost, ...] = ()

    @property
    def ratio(self) -> float:
        return self.productive_secs / self.wall_secs if self.wall_secs > 0 else 0.0

    def summary(self) -> str:
        """One line for a user: `goodput 82% of 61.0 s: ...`."""
        lost = ", ".join(f"{kind} {secs:.1f} s" for kind, secs in sorted(self.lost_by_role.items()))
        parts = [
            f"goodput {self.ratio:.0%} of {self.wall_secs:.1f} s: "
            f"training {self.productive_secs:.1f} s",
            f"startup {self.startup_secs:.1f} s",
            f"admission {self.admission_secs:.1f} s",
            f"restarts {self.restart_secs:.1f} s",
            f"recomputation {self.recompute_secs:.1f} s",
        ]
        line = ", ".join(parts) + (f" (lost by role: {lost})" if lost else "")
        for cost in self.preemptions:
            line += (
                f"; {cost.role} preempted at step {cost.steps_before}, resumed from "
                f"{cost.resumed_from}: {cost.steps_lost} steps, {cost.secs_lost:.1f} s lost"
            )
        return line


def _rate(attempt: TrainAttempt) -> float:
    """Steps per second over the attempt's training (0 when it trained none)."""
    steps = attempt.last_step - attempt.resumed_step
    secs = attempt.last_step_at - attempt.training_at
    return steps / secs if steps > 0 and secs > 0 else 0.0


def _secs(steps: int, attempt: TrainAttempt) -> float:
    rate = _rate(attempt)
    return steps / rate if rate > 0 else 0.0


def goodput(
    attempts: Sequence[TrainAttempt],
    notices: Sequence[NoticeRecord],
    *,
    launched_at: float | None = None,
    ended_at: float | None = None,
) -> Goodput:
    """The goodput of a run whose chief ran `attempts`, given the run's `notices`; the wall time
    runs from `launched_at` (default: the first attempt's start) to `ended_at` (default: the last
    attempt's end or last step)."""
    runs = sorted(attempts, key=lambda a: a.started_at)
    if not runs:
        raise ValueError("no attempt of the chief recorded: it never started training")
    first, last = runs[0], runs[-1]
    start = launched_at if launched_at is not None else first.started_at
    end = ended_at if ended_at is not None else (last.ended_at or last.last_step_at)
    productive = recompute = restart = 0.0
    lost: dict[str, float] = {}
    costs: list[PreemptionCost] = []
    pending = sorted((n for n in notices if not _stopping(n, runs)), key=lambda n: n.received_at)
    for attempt, following in zip(runs, [*runs[1:], None], strict=True):
        kept_to = attempt.last_step if following is None else following.resumed_step
        kept = max(min(kept_to, attempt.last_step) - attempt.resumed_step, 0)
        redone = max(attempt.last_step - max(kept_to, attempt.resumed_step), 0)
        productive += _secs(kept, attempt)
        if following is None:
            continue
        redo_secs = _secs(redone, attempt)
        gap = max(following.training_at - attempt.last_step_at, 0.0)
        recompute += redo_secs
        restart += gap
        # The restart's cause: the last notice within its grace period before the chief ended
        # (a notice to a parameter-server worker earlier on restarted nothing).
        ended = attempt.ended_at if attempt.ended_at is not None else attempt.last_step_at
        here = [n for n in pending if 0 <= ended - n.received_at <= n.grace_secs]
        cause = here[-1].role.rpartition("-")[0] if here else "crash"
        lost[cause] = lost.get(cause, 0.0) + gap + redo_secs
        for notified in here[-1:]:
            before = min(attempt.last_step, _step_at(attempt, notified.received_at))
            costs.append(
                PreemptionCost(
                    role=notified.role,
                    received_at=notified.received_at,
                    steps_before=before,
                    resumed_from=following.resumed_step,
                    steps_lost=max(before - following.resumed_step, 0),
                    secs_lost=round(
                        gap + _secs(max(before - following.resumed_step, 0), attempt), 3
                    ),
                )
            )
    # A notice that restarted no attempt (a parameter-server worker's): nothing resumed.
    counted = {(c.role, c.received_at) for c in costs}
    for notified in pending:
        if (notified.role, notified.received_at) in counted:
            continue
        during = [a for a in runs if a.started_at <= notified.received_at] or [first]
        step = min(during[-1].last_step, _step_at(during[-1], notified.received_at))
        costs.append(
            PreemptionCost(
                role=notified.role,
                received_at=notified.received_at,
                steps_before=step,
                resumed_from=step,
                steps_lost=0,
                secs_lost=0.0,
            )
        )
    return Goodput(
        wall_secs=round(max(end - start, 0.0), 3),
        productive_secs=round(productive, 3),
        admission_secs=round(max(first.started_at - start, 0.0), 3),
        startup_secs=round(max(first.training_at - first.started_at, 0.0), 3),
        restart_secs=round(restart, 3),
        recompute_secs=round(recompute, 3),
        lost_by_role={kind: round(secs, 3) for kind, secs in lost.items()},
        steps=last.last_step,
        attempts=len(runs),
        preemptions=tuple(sorted(costs, key=lambda c: c.received_at)),
    )


def _stopping(notified: NoticeRecord, runs: Sequence[TrainAttempt]) -> bool:
    """A notice that came after the chief had ended, before it trained again (or after the
    last run ended): the runner stopping every role to restart or end the job, not a
    preemption. Also one the last run ended with, saving for it (`end` "preempted"): the job
    stopped there (a user's stop sends every role SIGTERM too), and nothing resumed."""
    for attempt, following in zip(runs, [*runs[1:], None], strict=True):
        ended = attempt.ended_at if attempt.ended_at is not None else attempt.last_step_at
        started_again = following.training_at if following is not None else float("inf")
        if ended < notified.received_at < started_again:
            return True
    last = runs[-1]
    return (
        last.end == "preempted"
        and last.ended_at is not None
        and 0 <= last.ended_at - notified.received_at <= notified.grace_secs
    )


def _step_at(attempt: TrainAttempt, when: float) -> int:
    """The step the attempt had reached at `when`, at its average rate."""
    if when >= attempt.last_step_at:
        return attempt.last_step
    elapsed = max(when - attempt.training_at, 0.0)
    return attempt.resumed_step + int(elapsed * _rate(attempt))


def measure(
    storage: Storage,
    model_dir: str,
    launch_id: str,
    *,
    launched_at: float | None = None,
    ended_at: float | None = None,
) -> Goodput | None:
    """Read one launch's records from `model_dir`, compute its goodput and write it to
    `model_dir/tfdist/goodput.json`; None if its chief never started training."""
    attempts = [
        TrainAttempt.model_validate_json(text)
        for text in _texts(storage, join(model_dir, ATTEMPTS_DIR))
    ]
    notices = [
        NoticeRecord.model_validate_json(text)
        for text in _texts(storage, join(model_dir, NOTICES_DIR))
    ]
    attempts = [a for a in attempts if a.launch_id == launch_id]
    if not attempts:
        return None
    result = goodput(
        attempts,
        [n for n in notices if n.launch_id == launch_id],
        launched_at=launched_at,
        ended_at=ended_at,
    )
    storage.write_text(join(model_dir, GOODPUT), result.model_dump_json(indent=1))
    return result


def _texts(storage: Storage, directory: str) -> list[str]:
    names = [name for name in storage.list(directory) if name.endswith(".json")]
    return [text for name in names if (text := storage.read_text(name)) is not None]
