"""What the roles leave in `model_dir` for others to read: eval records and the training marker.

Layout (paths relative to `model_dir`):

    ckpt-<step>.index, ckpt-<step>.data-*, checkpoint   the chief's checkpoints
    <eval_dir>/record-<step>.json                       one EvalRecord per evaluated checkpoint
    <eval_dir>/events.out.tfevents.*                    the same metrics for TensorBoard
    tfdist/train-done.json                              TrainDone, written once training ended

No TensorFlow here: the gate and the operators read these with plain storage clients.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

TRAIN_DONE = "tfdist/train-done.json"


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
