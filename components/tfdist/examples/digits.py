"""Handwritten digits (scikit-learn's bundled 8x8 images): a small real model, no download.

`prepare_data` writes TFRecord shards; the input functions read them with `tf.data`. The module
follows the trainer contract in `tfdist.runtime.contract`. Run `python -m tfdist.examples.digits
DATA_DIR` to write the shards ahead of time (the input functions also do it when they are missing).
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import numpy as np
import tensorflow as tf

from tfdist.runtime.contract import RunContext

# Batches are sized per replica, so any number of replicas works: the global batch is
# PER_REPLICA_BATCH_SIZE x `num_replicas_in_sync` (a fixed global batch would have to be
# divisible by it). Under parameter servers each worker is one replica (one per GPU).
PER_REPLICA_BATCH_SIZE = 64
EVAL_BATCH_SIZE = 64
TRAIN_SHARDS = 4
EVAL_EXAMPLES = 297  # of 1797; the rest train
NUM_CLASSES = 10
DONE_MARKER = "_PREPARED"


def data_dir_of(ctx: RunContext) -> str:
    return ctx.data_dir or f"{ctx.model_dir}/data"


def _example(image: np.ndarray, label: int) -> bytes:
    feature = {
        "image": tf.train.Feature(float_list=tf.train.FloatList(value=image.tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return bytes(example.SerializeToString())


def _write_shard(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with tf.io.TFRecordWriter(temporary) as writer:
        for image, label in zip(images, labels, strict=True):
            writer.write(_example(image, int(label)))
    tf.io.gfile.rename(temporary, path, overwrite=True)


def prepare_data(data_dir: str) -> str:
    """Write `train-*.tfrecord` and `eval-0.tfrecord` once; safe when several roles race."""
    if tf.io.gfile.exists(f"{data_dir}/{DONE_MARKER}"):
        return data_dir
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed=0).permutation(len(labels))
    images, labels = images[order], labels[order]
    tf.io.gfile.makedirs(data_dir)
    train_images, train_labels = images[EVAL_EXAMPLES:], labels[EVAL_EXAMPLES:]
    for shard in range(TRAIN_SHARDS):
        _write_shard(
            f"{data_dir}/train-{shard}.tfrecord",
            train_images[shard::TRAIN_SHARDS],
            train_labels[shard::TRAIN_SHARDS],
        )
    _write_shard(f"{data_dir}/eval-0.tfrecord", images[:EVAL_EXAMPLES], labels[:EVAL_EXAMPLES])
    with tf.io.gfile.GFile(f"{data_dir}/{DONE_MARKER}", "w") as marker:
        marker.write(f"{len(labels)} examples\n")
    return data_dir


def _parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    spec = {
        "image": tf.io.FixedLenFeature([64], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    parsed = tf.io.parse_single_example(record, spec)
    return parsed["image"], parsed["label"]


def _prepared_data_dir(ctx: RunContext) -> str:
    """`prepare_data` as plain Python, also when `tf.function` traces an input function."""
    return str(tf.autograph.experimental.do_not_convert(prepare_data)(data_dir_of(ctx)))


def train_input_fn(ctx: RunContext, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    data_dir = _prepared_data_dir(ctx)
    pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
    files = tf.data.Dataset.list_files(f"{data_dir}/train-*.tfrecord", shuffle=False)
    if pipelines <= TRAIN_SHARDS:  # each process reads its own files
        records = files.shard(pipelines, pipeline).interleave(
            tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE
        )
    else:  # more processes than files: each reads every pipelines-th record
        records = tf.data.TFRecordDataset(files).shard(pipelines, pipeline)
    return (
        records.map(_parse, num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .shuffle(1024, seed=input_context.input_pipeline_id)
        .repeat()
        .batch(PER_REPLICA_BATCH_SIZE, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def eval_input_fn(ctx: RunContext) -> tf.data.Dataset:
    data_dir = _prepared_data_dir(ctx)
    return (
        tf.data.TFRecordDataset(f"{data_dir}/eval-0.tfrecord")
        .map(_parse, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(EVAL_BATCH_SIZE)
        .prefetch(tf.data.AUTOTUNE)
    )


def build_model(ctx: RunContext) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(64,), name="image"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="digits",
    )


def build_optimizer(ctx: RunContext) -> Any:
    import keras

    return keras.optimizers.Adam(learning_rate=3e-3)


def loss_fn(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def eval_metrics(ctx: RunContext) -> dict[str, Any]:
    import keras

    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


if __name__ == "__main__":
    print(prepare_data(sys.argv[1]))
