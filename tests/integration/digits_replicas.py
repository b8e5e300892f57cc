"""Trains the digits example two steps at each replica count given, in this one process:
`MirroredStrategy` over that many logical CPU devices, with the runtime's own model state and
training step (as a role with that many local GPUs would).

Usage: `python digits_replicas.py DATA_DIR N [N ...]`; prints one JSON line per count.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile

import tensorflow as tf

from tfdist.runtime.contract import RunContext, load_trainer
from tfdist.runtime.train import TrainState, _make_step_fn


def main(data_dir: str, counts: list[int]) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * max(counts)
    )
    trainer = load_trainer("tfdist.examples.digits")
    ctx = RunContext(tempfile.mkdtemp(), data_dir, "chief", 0, num_workers=1)
    for count in counts:
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(count)],
            # Collective ops would reuse one group key for strategies of different sizes.
            cross_device_ops=tf.distribute.ReductionToOneDevice(),
        )
        dataset = strategy.distribute_datasets_from_function(
            lambda input_context: trainer.train_input_fn(ctx, input_context)
        )
        _, labels = next(iter(dataset))
        batches = [int(b.shape[0]) for b in strategy.experimental_local_results(labels)]
        state = TrainState(trainer, ctx, strategy)
        train_step = _make_step_fn(state, trainer, strategy)
        iterator = iter(dataset)
        losses = [float(train_step(iterator)) for _ in range(2)]
        result = {
            "replicas": strategy.num_replicas_in_sync,
            "batches": batches,
            "steps": int(state.step.numpy()),
            "finite": all(math.isfinite(loss) for loss in losses),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(arg) for arg in sys.argv[2:]])
