"""File access from inside role processes, through TensorFlow's filesystems (local or gs://)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import tensorflow as tf


def write_json(path: str, data: Any) -> None:
    """Write atomically where the filesystem allows: a temporary name, then a rename."""
    directory = path.rsplit("/", 1)[0]
    tf.io.gfile.makedirs(directory)
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(temporary, "w") as handle:
        handle.write(json.dumps(data, sort_keys=True, indent=1))
    tf.io.gfile.rename(temporary, path, overwrite=True)


def read_json(path: str) -> Any | None:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.loads(handle.read())


def launch_id() -> str:
    """The id the launcher gave this gang of role processes (empty when run by hand)."""
    return os.environ.get("TFDIST_LAUNCH_ID", "")
