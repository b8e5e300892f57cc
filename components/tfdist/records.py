"""What the roles leave in `model_dir` for others to read: eval records and the training marker.

Layout (paths relative to `model_dir`):

    ckpt-<step>.index, ckpt-<step>.data-*, checkpoint   the chief's checkpoints
    events.out.tfevents.*                               the chief's training summaries (loss,
                                                        steps_per_sec, learning_rate)
    <eval_dir>/record-<step>.json                       one EvalRecord per evaluated checkpoint
    <eval_dir>/events.out.tfevents.*                    the same metrics for TensorBoard
    tfdist/train-done.json                              TrainDone, written once training ended
    tfdist/progress/<role>.json                         RoleProgress of each training role
    tfdist/notices/<role>-<ms>.json                     NoticeRecord: a role got a preemption
                                                        notice (<ms>: when, in ms since the epoch)
    tfdist/notices/<role>-<ms>.ack                      the chief's answer to a ps's notice
    tfdist/preemption-saved.json                        SavedRecord: the chief saved for notices
    tfdist/attempts/<ms>.json                           TrainAttempt: one run of the chief
    tfdist/goodput.json                                 Goodput, written by the runner at the end
    tfdist/admission/<launch_id>.json                   Admission: a launch's wait in a queue
                                                        (Kueue), written by its watch

`tensorboard --logdir <model_dir>` shows training (run `.`) and evaluation (run `eval`) together.

No TensorFlow here: the gate and the operators read these with plain storage clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from tfdist.storage import Storage

TRAIN_DONE = "tfdist/train-done.json"
PROGRESS_DIR = "tfdist/progress"
NOTICES_DIR = "tfdist/notices"
PREEMPTION_SAVED = "tfdist/preemption-saved.json"
ATTEMPTS_DIR = "tfdist/attempts"
GOODPUT = "tfdist/goodput.json"
ADMISSION_DIR = "tfdist/admission"


class EvalRecord(BaseModel):
    """The evaluator's result for one checkpoint."""

    model_config = ConfigDict(frozen=True)

    global_step: int
    metrics: dict[str, float]
    checkpoint_path: str
    timestamp: float
    eval_steps: int


class TrainDone(BaseModel):
    """Written by the chief after its last checkpoint; parameter servers exit when they see it."""

    model_config = ConfigDict(frozen=True)

    global_step: int
    max_steps: int | None
    timestamp: float
    launch_id: str  # which gang launch trained it: a stale marker from a past launch is ignored


class RoleProgress(BaseModel):
    """One training role's throughput: `tfdist/progress/<role>.json`, rewritten (atomically
    where the store allows) each time the role logs its progress, every
    `log_step_count_steps` steps (under parameter-server training: every checkpoint).

    `unit` says what `count` and `rate` count: `steps` for the chief and all-reduce workers
    (training steps this process took part in), `closures` for a worker under
    parameter-server training (step functions the chief's coordinator ran on it; the chief
    counts them and writes the file, so `reported_by` is `chief-0`). `count` is since this
    launch started or resumed the role; `rate` is per second over the last interval;
    `global_step` is the job's step when written. A parameter server writes none.
    """

    model_config = ConfigDict(frozen=True)

    role: str  # e.g. worker-1
    unit: Literal["steps", "closures"]
    count: int
    rate: float
    global_step: int
    max_steps: int | None
    loss: float | None = None  # the step's loss, where the role sees it
    timestamp: float  # seconds since the epoch
    launch_id: str
    reported_by: str


def progress_name(model_dir: str, role: str) -> str:
    return f"{model_dir}/{PROGRESS_DIR}/{role}.json"


def eval_record_name(eval_dir: str, global_step: int) -> str:
    """Zero-padded so that names sort by step."""
    return f"{eval_dir}/record-{global_step:012d}.json"


def latest_record(names: list[str]) -> str | None:
    """The record of the highest step among `names` (paths ending in `record-<step>.json`)."""
    records = sorted(
        name
        for name in names
        if name.rsplit("/", 1)[-1].startswith("record-") and name.endswith(".json")
    )
    return records[-1] if records else None


class NoticeRecord(BaseModel):
    """A role got SIGTERM (a spot reclaim, a drain): the chief is to save a checkpoint now."""

    model_config = ConfigDict(frozen=True)

    role: str
    launch_id: str
    received_at: float  # seconds since the epoch
    grace_secs: float  # how long the role has before it is killed


class SavedRecord(BaseModel):
    """The chief saved the checkpoint at `global_step` for the notices of `for_roles`."""

    model_config = ConfigDict(frozen=True)

    global_step: int
    launch_id: str
    timestamp: float
    for_roles: tuple[str, ...]


class TrainAttempt(BaseModel):
    """One run of the chief, from its process start to its end, as goodput needs it; rewritten
    each time the chief logs its progress. Times are seconds since the epoch."""

    model_config = ConfigDict(frozen=True)

    launch_id: str
    started_at: float  # the chief's process started
    resumed_step: int  # the checkpoint it restored (0: none)
    training_at: float  # its first step started
    last_step: int
    last_step_at: float
    ended_at: float | None = None
    end: Literal["finished", "preempted"] | None = None  # None: still running, or it crashed


def attempt_name(model_dir: str, started_at: float) -> str:
    return f"{model_dir}/{ATTEMPTS_DIR}/{int(started_at * 1000):015d}.json"


class Admission(BaseModel):
    """A launch's last wait in a queue (Kueue): since when, where it stands and why, and when it
    was let in (None: still waiting). `detail` is the queue's own account, e.g. `queued in
    Kueue (queue gpu: 2nd of 5 in it, 7th in its cluster queue): Pending: ...`, without the
    time waited, so that the record changes only when the queue's answer does."""

    model_config = ConfigDict(frozen=True)

    launch_id: str
    queue: str
    queued_at: float  # seconds since the epoch
    admitted_at: float | None = None
    detail: str = ""

    @property
    def waiting(self) -> bool:
        return self.admitted_at is None

    def then(self, seen: Admission) -> Admission:
        """This record updated with a later observation `seen` of the same launch. Once the
        launch is admitted the queue no longer says since when it waited (after an eviction,
        only the JobSet's creation time is left): a watch that saw the wait keeps its start."""
        if not seen.waiting and (self.waiting or self.admitted_at == seen.admitted_at):
            return seen.model_copy(update={"queued_at": self.queued_at})
        return seen


def admission_name(model_dir: str, launch_id: str) -> str:
    return f"{model_dir}/{ADMISSION_DIR}/{launch_id}.json"


def read_admission(storage: Storage, model_dir: str, launch_id: str) -> Admission | None:
    """The launch's `Admission` record; None when there is none (or it is unreadable)."""
    text = storage.read_text(admission_name(model_dir, launch_id))
    try:
        return Admission.model_validate_json(text) if text else None
    except ValidationError:
        return None
