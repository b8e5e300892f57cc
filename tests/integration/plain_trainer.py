"""A trainer written without tfdist: any program that reads TF_CONFIG and MODEL_DIR.

Every training role joins a MultiWorkerMirroredStrategy cluster, fits a one-weight linear model
for a few all-reduced steps, and writes `<MODEL_DIR>/<task type>-<task index>.json` with what
it saw. Uses the standard library and TensorFlow only.
"""

from __future__ import annotations

import json
import os
import sys

import tensorflow as tf

STEPS = 5


def main() -> int:
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    model_dir = os.environ["MODEL_DIR"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        weight = tf.Variable(0.0)

    @tf.function
    def train_step() -> tf.Tensor:
        def replica_step() -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = (weight * 2.0 - 4.0) ** 2  # minimum at weight == 2
            weight.assign_sub(0.05 * tape.gradient(loss, weight))
            return loss

        return strategy.reduce("SUM", strategy.run(replica_step), axis=None)

    losses = [float(train_step()) for _ in range(STEPS)]
    os.makedirs(model_dir, exist_ok=True)
    result = {
        "task": task,
        "replicas": strategy.num_replicas_in_sync,
        "losses": losses,
        "weight": float(weight.numpy()),
    }
    path = os.path.join(model_dir, f"{task['type']}-{task['index']}.json")
    with open(path, "w") as handle:
        json.dump(result, handle)
    print(f"{task['type']}-{task['index']}: wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
