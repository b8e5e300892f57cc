"""Parameter servers, and workers under parameter-server training: serve until training ends.

`tf.distribute.Server.join()` never returns, so a ps left alone is a leak. Instead we serve in
the background and exit once the chief of this launch has written its `TrainDone` marker.

A worker cannot count the steps the chief's coordinator runs on it; the chief counts them and
writes the worker's `RoleProgress`, which the worker logs as its own progress, so a straggler
shows in its own log. A ps reports nothing (TensorFlow's server keeps no request count).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import tensorflow as tf

from tfdist.records import TRAIN_DONE, RoleProgress, TrainDone, progress_name
from tfdist.runtime import notice
from tfdist.runtime.storage import launch_id, read_json
from tfdist.spec import JobSpec
from tfdist.tf_config import TFConfig

log = logging.getLogger("tfdist.serve")

POLL_SECS = 1.0
PROGRESS_SECS = 2.0


class CannotListen(RuntimeError):
    """This role's gRPC server could not bind its `TF_CONFIG` address."""


@contextmanager
def listening(config: TFConfig) -> Iterator[None]:
    """Turn TensorFlow's "Could not start gRPC server" into an error naming the address."""
    try:
        yield
    except tf.errors.OpError as error:
        if "Could not start gRPC server" not in str(error):
            raise
        role = f"{config.task_type}-{config.task_index}"
        address = config.cluster[config.task_type][config.task_index]
        raise CannotListen(
            f"{role} cannot listen on {address}, its TF_CONFIG address: the port is in use by "
            "another process (or the host is not this machine); launch the job again so that "
            "free ports are picked"
        ) from error


def training_finished(spec: JobSpec, launch: str) -> bool:
    raw = read_json(f"{spec.model_dir}/{TRAIN_DONE}")
    if raw is None:
        return False
    done = TrainDone.model_validate(raw)
    reached = (
        spec.train_spec.max_steps is not None and done.global_step >= spec.train_spec.max_steps
    )
    return done.launch_id == launch and reached


def serve_until_done(spec: JobSpec, config: TFConfig) -> None:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    with listening(config):
        server = tf.distribute.Server(
            resolver.cluster_spec(),
            job_name=config.task_type,
            task_index=config.task_index,
            protocol="grpc",
            start=True,
        )
    log.info("serving %s", server.target)
    launch = launch_id()
    role = f"{config.task_type}-{config.task_index}"
    progress = ProgressLog(spec.model_dir, role, launch) if config.task_type == "worker" else None
    while not training_finished(spec, launch):
        if notice.received():
            _end_after_notice(spec, config, role)
        if progress is not None:
            progress.maybe_log()
        notice.wait(POLL_SECS)
    if progress is not None:
        progress.maybe_log(force=True)
    log.info("the chief finished training; stopping")


def _end_after_notice(spec: JobSpec, config: TFConfig, role: str) -> None:
    """A worker ends at once (the coordinator runs its steps elsewhere); a ps serves on until
    the chief has saved a checkpoint (within the grace period), so the job resumes from there."""
    told = notice.announce(spec.model_dir, role, spec.restart_policy.grace_period_secs)
    if role.startswith("ps-"):
        log.info("preemption notice: asked the chief to save a checkpoint")
        saved = notice.wait_for_save(spec.model_dir, told, config.cluster["chief"][0])
        if saved is None:
            log.warning("preemption notice: the chief saved no checkpoint for it in time")
        else:
            log.info("preemption notice: the chief saved step %d", saved.global_step)
    log.info("preemption notice: ending (exit code %d)", notice.PREEMPTED_EXIT_CODE)
    raise notice.Preempted


class ProgressLog:
    """Logs what the chief last reported about this worker, when it changed (at most every
    `PROGRESS_SECS`)."""

    def __init__(self, model_dir: str, role: str, launch: str):
        self.path, self.launch = progress_name(model_dir, role), launch
        self.shown: RoleProgress | None = None
        self.looked = time.monotonic()

    def maybe_log(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.looked < PROGRESS_SECS:
            return
        self.looked = time.monotonic()
        try:
            raw = read_json(self.path)
            progress = RoleProgress.model_validate(raw) if raw else None
        except (ValueError, tf.errors.OpError) as error:
            # The chief replaces the record while it is read (on gs:// a rename is a copy,
            # read in ranges): a line of progress is not worth the role; look again later.
            log.debug("progress record %s not readable now: %s", self.path, error)
            return
        if progress is None or progress.launch_id != self.launch or progress == self.shown:
            return
        total = f"/{progress.max_steps}" if progress.max_steps else ""
        log.info(
            "step %d%s: ran %d steps here (%.1f steps/s)",
            progress.global_step,
            total,
            progress.count,
            progress.rate,
        )
        self.shown = progress
