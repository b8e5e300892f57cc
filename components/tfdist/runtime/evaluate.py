"""The evaluator: evaluate each new checkpoint, write its record, stop after `max_steps`.

Follows the estimator's evaluator loop (`tfdist.runtime.eval_loop`): wait `start_delay_secs`,
then evaluate the *latest* checkpoint (intermediate ones may be skipped), at most once per
`throttle_secs`, and exit after evaluating the checkpoint whose step is at least `max_steps`.
A restarted evaluator skips the checkpoints that already have a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tensorflow as tf

from tfdist.records import EvalRecord, eval_record_name
from tfdist.runtime.contract import RunContext, Trainer
from tfdist.runtime.eval_loop import CheckpointGone, follow_checkpoints
from tfdist.runtime.storage import write_json
from tfdist.spec import JobSpec

log = logging.getLogger("tfdist.evaluate")
T = TypeVar("T")


def checkpoint_step(path: str) -> int:
    reader = tf.train.load_checkpoint(path)
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


class Evaluation:
    """A model built once, restored from each checkpoint in turn and run over the eval data."""

    def __init__(self, spec: JobSpec, trainer: Trainer, ctx: RunContext):
        import keras

        self.spec, self.trainer, self.ctx = spec, trainer, ctx
        self.model = trainer.build_model(ctx)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.checkpoint = tf.train.Checkpoint(model=self.model, step=self.step)
        self.loss = keras.metrics.Mean(name="loss")
        self.metrics: dict[str, Any] = (
            dict(trainer.eval_metrics(ctx)) if trainer.has("eval_metrics") else {}
        )
        self.eval_dir = f"{spec.model_dir}/{spec.eval_spec.dir_name}"
        self.writer = tf.summary.create_file_writer(self.eval_dir)
        self._step_fn = tf.function(self._eval_step)

    def _eval_step(self, features: Any, labels: Any) -> None:
        outputs = self.model(features, training=False)
        self.loss.update_state(self.trainer.loss_fn(labels, outputs))
        for metric in self.metrics.values():
            metric.update_state(labels, outputs)

    def run(self, checkpoint_path: str) -> EvalRecord:
        self.checkpoint.restore(checkpoint_path).expect_partial()
        for metric in (self.loss, *self.metrics.values()):
            metric.reset_state()
        dataset = self.trainer.eval_input_fn(self.ctx)
        if self.spec.eval_spec.steps is not None:
            dataset = dataset.take(self.spec.eval_spec.steps)
        batches = 0
        for features, labels in dataset:
            self._step_fn(features, labels)
            batches += 1
        if not batches:
            raise RuntimeError("eval_input_fn produced no batches; nothing was evaluated")
        results = {"loss": float(self.loss.result())}
        results |= {name: float(metric.result()) for name, metric in self.metrics.items()}
        step = int(self.step.numpy())
        record = EvalRecord(
            global_step=step,
            metrics=results,
            checkpoint_path=checkpoint_path,
            timestamp=time.time(),
            eval_steps=batches,
        )
        with self.writer.as_default(step=step):
            for name, value in results.items():
                tf.summary.scalar(name, value)
        self.writer.flush()
        write_json(eval_record_name(self.eval_dir, step), record.model_dump())
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(results.items()))
        log.info("eval at step %d over %d batches: %s", step, batches, shown)
        return record


def evaluated_steps(eval_dir: str) -> set[int]:
    names = tf.io.gfile.glob(f"{eval_dir}/record-*.json")
    return {int(name.rsplit("-", 1)[-1].removesuffix(".json")) for name in names}


def _unless_deleted(read: Callable[[str], T], path: str) -> T:
    """`read(path)`, or `CheckpointGone` when the chief deleted the checkpoint meanwhile."""
    try:
        return read(path)
    except tf.errors.NotFoundError:
        if tf.io.gfile.exists(f"{path}.index"):
            raise
        raise CheckpointGone(path) from None


class ModelDirCheckpoints:
    """The checkpoints the chief writes into `model_dir`."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir

    def latest(self) -> str | None:
        path: str | None = tf.train.latest_checkpoint(self.model_dir)
        return path

    def step(self, path: str) -> int:
        return _unless_deleted(checkpoint_step, path)


def run_evaluator(spec: JobSpec, trainer: Trainer, ctx: RunContext) -> EvalRecord | None:
    """The evaluator role's loop; returns the record of the final checkpoint (None when a
    restarted evaluator finds it already evaluated)."""
    evaluation = Evaluation(spec, trainer, ctx)
    return follow_checkpoints(
        ModelDirCheckpoints(spec.model_dir),
        lambda path: _unless_deleted(evaluation.run, path),
        done=evaluated_steps(evaluation.eval_dir),
        max_steps=spec.train_spec.max_steps,
        start_delay_secs=spec.eval_spec.start_delay_secs,
        throttle_secs=spec.eval_spec.throttle_secs,
    )
