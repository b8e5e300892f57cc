"""A minimal hand-written TensorFlow custom loop for the digits model: the throughput baseline.

Same model, optimizer, loss and `tf.data` pipeline as `tfdist.examples.digits` (the user's
trainer module), same strategy choice as the runtime (no `TF_CONFIG`: the default strategy;
a `TF_CONFIG` cluster without ps: `MultiWorkerMirroredStrategy` with ring all-reduce), but none
of tfdist's runtime: no global-step variable, no checkpoint manager, no stop rule. It logs
progress lines in the runtime's format so both are measured by the same parser.

    python -m bench.bare_trainer --data-dir D --steps 2000 --log-every 100 [--input-only]

`--input-only` iterates the distributed train dataset alone, to show the input rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from typing import Any

from tfdist import rolelog

log = logging.getLogger("bench.bare")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_trainer", description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--input-only", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    role = f"{task['type']}-{task['index']}" if task else "bare"
    rolelog.setup(role, sys.stdout)  # the runtime's own line format, parsed alike
    log.setLevel(logging.INFO)

    import tensorflow as tf

    from tfdist.examples import digits
    from tfdist.runtime.contract import RunContext

    if config.get("cluster"):
        strategy: Any = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING
            )
        )
    else:
        strategy = tf.distribute.get_strategy()
    workers = max(strategy.extended._num_workers if config.get("cluster") else 1, 1)
    ctx = RunContext(
        model_dir=tempfile.mkdtemp(prefix="bare-"),
        data_dir=args.data_dir,
        task_type=task.get("type", "worker"),
        task_index=task.get("index", 0),
        num_workers=workers,
    )
    dataset = strategy.distribute_datasets_from_function(
        lambda input_context: digits.train_input_fn(ctx, input_context)
    )
    iterator = iter(dataset)
    log.info("training from step 0 to %d", args.steps)

    if args.input_only:
        for step in range(1, args.steps + 1):
            next(iterator)
            if step % args.log_every == 0:
                log.info("step %d/%d loss 0.0 (input only)", step, args.steps)
        return 0

    with strategy.scope():
        model = digits.build_model(ctx)
        optimizer = digits.build_optimizer(ctx)

    def replica_step(features: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            loss = tf.nn.compute_average_loss(digits.loss_fn(labels, logits))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    def distributed_step(iterator: Any) -> Any:
        features, labels = next(iterator)
        losses = strategy.run(replica_step, args=(features, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    train_step = tf.function(distributed_step)

    for step in range(1, args.steps + 1):
        loss = train_step(iterator)
        if step % args.log_every == 0:
            log.info("step %d/%d loss %.4f", step, args.steps, float(loss))
    tf.train.Checkpoint(model=model, optimizer=optimizer).write(f"{ctx.model_dir}/ckpt")
    log.info("done")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # a started collective server blocks interpreter shutdown
