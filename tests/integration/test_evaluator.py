"""The evaluator loop in this process, against checkpoints written by a real CheckpointManager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jobtools import digits_job

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_evaluator_takes_the_latest_when_its_checkpoint_was_deleted(
    tmp_path: Path, digits_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chief saves and prunes (keep 1) between the evaluator finding a checkpoint and
    reading it. The pruning is real; only its moment is forced, by running it from the
    evaluator's own step lookup."""
    import tensorflow as tf

    from tfdist.runtime import evaluate
    from tfdist.runtime.contract import RunContext, load_trainer
    from tfdist.spec import parse_spec

    model_dir = tmp_path / "model"
    spec = parse_spec(digits_job("evaluator", model_dir, digits_data, {}, max_steps=40))
    trainer = load_trainer("tfdist.examples.digits")
    ctx = RunContext(str(model_dir), digits_data, "evaluator", 0, num_workers=1)
    step = tf.Variable(20, dtype=tf.int64)
    chief = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=trainer.build_model(ctx), step=step),
        str(model_dir),
        max_to_keep=1,
        checkpoint_name="ckpt",
    )
    chief.save(checkpoint_number=20)
    read_step = evaluate.checkpoint_step
    looked_up: list[str] = []

    def chief_saves_meanwhile(path: str) -> Any:
        looked_up.append(Path(path).name)
        if step.numpy() == 20:
            step.assign(40)
            chief.save(checkpoint_number=40)  # deletes ckpt-20
        return read_step(path)

    monkeypatch.setattr(evaluate, "checkpoint_step", chief_saves_meanwhile)

    record = evaluate.run_evaluator(spec, trainer, ctx)

    assert record is not None and record.global_step == 40
    assert looked_up[0] == "ckpt-20" and looked_up[-1] == "ckpt-40"
    assert sorted(p.name for p in (model_dir / "eval").glob("record-*.json")) == [
        "record-000000000040.json"
    ]
