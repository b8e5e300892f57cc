"""Training: the chief and workers (all-reduce), or the chief as coordinator (parameter servers).

Custom training loops with Keras 3 layers and optimizers rather than `model.fit`: in TF 2.21,
Keras 3 `fit` fails under both multi-worker strategies, and `tf_keras` would replace the
`tensorflow-cpu` wheel with the full one. A loop we own also gives the estimator's stop rule
exactly: training stops at the checkpoint whose step is `max_steps`, and a restarted job resumes
from the latest checkpoint instead of training `max_steps` more.
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

import tensorflow as tf

from tfdist.lifecycle import PREEMPTED_EXIT_CODE
from tfdist.records import (
    TRAIN_DONE,
    RoleProgress,
    TrainAttempt,
    TrainDone,
    attempt_name,
    progress_name,
)
from tfdist.runtime import notice, steps
from tfdist.runtime.contract import RunContext, Trainer
from tfdist.runtime.servers import listening
from tfdist.runtime.storage import launch_id, write_json
from tfdist.spec import JobSpec
from tfdist.tf_config import TFConfig

log = logging.getLogger("tfdist.train")

# What a parameter-server chief keeps, not torn down, until its process exits (see
# `_release_servers`).
_UNTIL_EXIT: list[Any] = []
# Steps the coordinator may have scheduled per worker and not yet run: enough to keep every
# worker busy, few enough that a preemption notice is answered with a save within a second.
IN_FLIGHT_PER_WORKER = 4


class TrainState:
    """Model, optimizer and step counter created under the strategy, plus their checkpoint."""

    def __init__(self, trainer: Trainer, ctx: RunContext, strategy: tf.distribute.Strategy):
        with strategy.scope():
            self.model = trainer.build_model(ctx)
            self.optimizer = (
                trainer.build_optimizer(ctx)
                if trainer.has("build_optimizer")
                else _default_optimizer()
            )
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            if self.model.built:
                # Keras 3 optimizers otherwise create their variables in the first step, which
                # fails when a role has several local replicas ("You must feed a value for
                # placeholder tensor", seen with several logical CPU devices in one role).
                self.optimizer.build(self.model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step
        )

    def restore_latest(self, model_dir: str) -> int:
        latest = tf.train.latest_checkpoint(model_dir)
        if latest:
            self.checkpoint.restore(latest).expect_partial()
            log.info("restored %s (step %d)", latest, int(self.step.numpy()))
        return int(self.step.numpy())


def _default_optimizer() -> Any:
    import keras

    return keras.optimizers.Adam(learning_rate=1e-3)


def build_strategy(config: TFConfig) -> tf.distribute.Strategy:
    """Parameter servers in the cluster: PS strategy; other clusters: all-reduce; local: default."""
    if config.mode == "local":
        return tf.distribute.get_strategy()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy: tf.distribute.Strategy
    with listening(config):
        if config.cluster.get("ps"):
            strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
        else:
            communication = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING
            )
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=resolver, communication_options=communication
            )
    # The multi-worker strategies install TensorFlow's preemption notifier, which catches
    # SIGTERM and only records it: take SIGTERM back (under all-reduce training TensorFlow's
    # `PreemptionCheckpointHandler` takes it over again, see `_synchronous_loop`).
    notice.listen()
    return strategy


def _make_step_fn(
    state: TrainState, trainer: Trainer, strategy: tf.distribute.Strategy, count: bool = True
) -> Any:
    """One training step; `count=False` leaves the step counter to the caller."""

    def replica_step(features: Any, labels: Any) -> tf.Tensor:
        with tf.GradientTape() as tape:
            outputs = state.model(features, training=True)
            loss = tf.nn.compute_average_loss(trainer.loss_fn(labels, outputs))
            if state.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(state.model.losses))
        variables = state.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        state.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        if count:
            state.step.assign_add(1)
        return loss

    def train_step(iterator: Any) -> tf.Tensor:
        features, labels = next(iterator)
        per_replica = strategy.run(replica_step, args=(features, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return tf.function(train_step)


class Progress:
    """Every `every` steps: logs step, steps/s and loss, and reports them (`Reporter`)."""

    def __init__(
        self, start_step: int, max_steps: int | None, every: int, reporter: Reporter | None = None
    ):
        self.every, self.max_steps, self.reporter = every, max_steps, reporter
        self.last_step, self.last_time = start_step, time.monotonic()

    def maybe_log(self, step: int, loss: float, force: bool = False) -> None:
        if not force and step - self.last_step < self.every:
            return
        now = time.monotonic()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        total = f"/{self.max_steps}" if self.max_steps else ""
        log.info("step %d%s loss %.4f (%.1f steps/s)", step, total, loss, rate)
        if self.reporter is not None:
            self.reporter.steps(step, loss, step - self.last_step, rate)
        self.last_step, self.last_time = step, now


class Reporter:
    """Writes this role's `RoleProgress` and, on the chief, TensorBoard training summaries
    (`loss`, `steps_per_sec`, `learning_rate`) into `model_dir`, next to the evaluator's."""

    def __init__(self, spec: JobSpec, config: TFConfig, state: TrainState, step: int):
        self.spec, self.state = spec, state
        self.role = f"{config.task_type}-{config.task_index}"
        self.counts: dict[str, int] = {}
        self.writer = tf.summary.create_file_writer(spec.model_dir) if config.is_chief else None
        self.attempt: TrainAttempt | None = None
        if config.is_chief:  # this run of the chief, for goodput
            now = time.time()
            self.attempt = TrainAttempt(
                launch_id=launch_id(),
                started_at=notice.STARTED_AT,
                resumed_step=step,
                training_at=now,
                last_step=step,
                last_step_at=now,
            )
            self._write_attempt()

    def _write_attempt(self, **changes: Any) -> None:
        if self.attempt is None:
            return
        self.attempt = self.attempt.model_copy(update=changes)
        name = attempt_name(self.spec.model_dir, self.attempt.started_at)
        write_json(name, self.attempt.model_dump())

    def ended(self, step: int, end: Literal["finished", "preempted"]) -> None:
        """This run of the chief ended training; the first call says when."""
        if self.attempt is None or self.attempt.ended_at is not None:
            return
        now = time.time()
        self._write_attempt(last_step=step, last_step_at=now, ended_at=now, end=end)

    def steps(self, step: int, loss: float, done: int, rate: float) -> None:
        self._write(self.role, "steps", step, done, rate, loss)
        self._write_attempt(last_step=step, last_step_at=time.time())
        if self.writer is not None:
            with self.writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("steps_per_sec", rate)
                tf.summary.scalar("learning_rate", _learning_rate(self.state.optimizer))
            self.writer.flush()

    def closures(self, step: int, ran: Mapping[str, int], seconds: float) -> None:
        """What the coordinator ran on each worker since the last call, and logs it."""
        shown = []
        for role, done in sorted(ran.items()):
            rate = done / max(seconds, 1e-9)
            shown.append(f"{role} {done} ({rate:.1f}/s)")
            self._write(role, "closures", step, done, rate, None)
        log.info("steps run per worker: %s", ", ".join(shown))

    def _write(
        self,
        role: str,
        unit: Literal["steps", "closures"],
        step: int,
        done: int,
        rate: float,
        loss: float | None,
    ) -> None:
        self.counts[role] = self.counts.get(role, 0) + done
        progress = RoleProgress(
            role=role,
            unit=unit,
            count=self.counts[role],
            rate=round(rate, 3),
            global_step=step,
            max_steps=self.spec.train_spec.max_steps,
            loss=loss,
            timestamp=time.time(),
            launch_id=launch_id(),
            reported_by=self.role,
        )
        write_json(progress_name(self.spec.model_dir, role), progress.model_dump())


def _learning_rate(optimizer: Any) -> float:
    try:
        return float(optimizer.learning_rate)
    except (TypeError, ValueError):  # a schedule that cannot be read as a number here
        return float("nan")


def _next_chunk(step: int, max_steps: int | None, every: int) -> int:
    """Steps until the next checkpoint boundary or `max_steps`, whichever comes first."""
    to_boundary = every - step % every
    return to_boundary if max_steps is None else min(to_boundary, max_steps - step)


def train(spec: JobSpec, trainer: Trainer, config: TFConfig) -> int:
    """Train until the checkpoint at `max_steps` exists; returns the final step."""
    strategy = build_strategy(config)
    ctx = RunContext(
        model_dir=spec.model_dir,
        data_dir=spec.data_dir,
        task_type=config.task_type,
        task_index=config.task_index,
        num_workers=max(config.num_worker_replicas, 1),
    )
    state = TrainState(trainer, ctx, strategy)
    step = state.restore_latest(spec.model_dir)
    max_steps = spec.train_spec.max_steps

    def finished(step: int) -> None:
        """The final checkpoint is saved: the chief tells the servers (and whoever waits)."""
        if config.is_chief:
            done = TrainDone(
                global_step=step, max_steps=max_steps, timestamp=time.time(), launch_id=launch_id()
            )
            write_json(f"{spec.model_dir}/{TRAIN_DONE}", done.model_dump())

    # Non-chief all-reduce workers take part in saving (it is collective) but write elsewhere.
    save_dir = spec.model_dir if config.is_chief else tempfile.mkdtemp(prefix="tfdist-ckpt-")
    try:
        manager = tf.train.CheckpointManager(
            state.checkpoint,
            save_dir,
            max_to_keep=spec.train_spec.keep_checkpoint_max,
            checkpoint_name="ckpt",
        )
        if max_steps is not None and step >= max_steps:
            log.info("checkpoint at step %d >= max_steps %d: nothing to train", step, max_steps)
            finished(step)
        else:
            log.info("training from step %d to %s", step, max_steps or "forever")
            parameter_servers = isinstance(
                strategy, tf.distribute.experimental.ParameterServerStrategy
            )
            run = _coordinated_loop if parameter_servers else _synchronous_loop
            reporter = Reporter(spec, config, state, step)
            try:
                step = run(spec, trainer, ctx, state, strategy, manager, step, finished, reporter)
            except notice.Preempted as stop:
                if stop.own:  # goodput counts it
                    role = f"{config.task_type}-{config.task_index}"
                    grace = spec.restart_policy.grace_period_secs
                    notice.announce(spec.model_dir, role, grace)
                reporter.ended(stop.step, "preempted")
                raise
            reporter.ended(step, "finished")
    finally:
        if not config.is_chief:
            shutil.rmtree(save_dir, ignore_errors=True)
    return step


def _synchronous_loop(
    spec: JobSpec,
    trainer: Trainer,
    ctx: RunContext,
    state: TrainState,
    strategy: tf.distribute.Strategy,
    manager: tf.train.CheckpointManager,
    step: int,
    finished: Callable[[int], None],
    reporter: Reporter,
) -> int:
    dataset = strategy.distribute_datasets_from_function(
        lambda input_context: trainer.train_input_fn(ctx, input_context)
    )
    iterator = iter(dataset)
    train_step = _make_step_fn(state, trainer, strategy)
    save_if_preempted = _preemption_saver(strategy, manager)
    max_steps = spec.train_spec.max_steps
    every = spec.train_spec.save_checkpoints_steps
    progress = Progress(step, max_steps, spec.train_spec.log_step_count_steps, reporter)
    while max_steps is None or step < max_steps:
        for _ in range(_next_chunk(step, max_steps, every)):
            loss = float(train_step(iterator))
            step += 1
            progress.maybe_log(step, loss)
            save_if_preempted(step)
        manager.save(checkpoint_number=step)
        if manager.directory == spec.model_dir:  # not a worker's throwaway copy
            log.info("saved checkpoint for step %d", step)
    progress.maybe_log(step, loss, force=step != progress.last_step)
    finished(step)
    return step


def _preemption_saver(
    strategy: tf.distribute.Strategy, manager: tf.train.CheckpointManager
) -> Callable[[int], None]:
    """What runs after every step: after a notice, save the checkpoint at this step, then end
    preempted. In a cluster TensorFlow's `PreemptionCheckpointHandler` does it, so that every
    member saves at the same step whichever of them got the notice (it saves collectively)."""
    notice.raise_if_received()  # before the handler took SIGTERM over: nothing new to save
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:

        def save_if_noticed(step: int) -> None:
            if notice.received():
                manager.save(checkpoint_number=step)
                _saved_for_notice(step, own=True)

        return save_if_noticed

    def preempted() -> None:
        # Every member ends; the one TensorFlow's handler saw SIGTERM reach says so.
        own = getattr(handler, "_received_own_sigterm", None)
        if own is not None and own.is_set():  # when: goodput tells a notice from a stop by it
            notice.mark_received(getattr(handler, "_received_own_sigterm_time", time.time()))
        _saved_for_notice(int(manager.checkpoint.step.numpy()), own=bool(own and own.is_set()))

    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        resolver,
        manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=preempted, grace_period=0
        ),
    )

    def save_if_preempted(step: int) -> None:
        handler.save_checkpoint_if_preempted(checkpoint_number=step)

    return save_if_preempted


def _saved_for_notice(step: int, own: bool) -> None:
    log.info(
        "preemption notice: saved the checkpoint for step %d; ending (exit code %d)",
        step,
        PREEMPTED_EXIT_CODE,
    )
    raise notice.Preempted(step, own)


def _coordinated_loop(
    spec: JobSpec,
    trainer: Trainer,
    ctx: RunContext,
    state: TrainState,
    strategy: tf.distribute.Strategy,
    manager: tf.train.CheckpointManager,
    step: int,
    finished: Callable[[int], None],
    reporter: Reporter,
) -> int:
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

    def per_worker_dataset() -> Any:
        return strategy.distribute_datasets_from_function(
            lambda input_context: trainer.train_input_fn(ctx, input_context)
        )

    iterator = iter(coordinator.create_per_worker_dataset(per_worker_dataset))
    # The coordinator counts the steps: a worker that dies mid-step has its step run again on
    # another worker, and a counter on the parameter servers would count it twice.
    step_fn = _make_step_fn(state, trainer, strategy, count=False)

    def counted_step(iterator: Any) -> tuple[tf.Tensor, tf.Tensor]:
        # Which worker ran it: the chief counts each worker's share of the steps.
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        return step_fn(iterator), worker

    train_step = tf.function(counted_step)

    max_steps = spec.train_spec.max_steps
    every = spec.train_spec.save_checkpoints_steps
    progress = Progress(step, max_steps, spec.train_spec.log_step_count_steps, reporter)
    # A notice (SIGTERM here, or a parameter server's) makes the chief save at the next step
    # and end: at most `ahead` steps are scheduled and not yet done when it comes.
    notices = notice.ChiefNotices(spec.model_dir, watch=True)
    ahead = IN_FLIGHT_PER_WORKER * max(ctx.num_workers - 1, 1)
    faults = steps.FaultBudget()
    while max_steps is None or step < max_steps:
        started = time.monotonic()
        count, fetched = steps.run_chunk(
            coordinator,
            lambda: coordinator.schedule(train_step, args=(iterator,)),
            _next_chunk(step, max_steps, every),
            stop=notices.pending,
            ahead=ahead,
            on_output=partial(_log_loss, progress, step),
            faults=faults,
        )
        step += count
        state.step.assign(step)
        if fetched:
            by_worker = Counter(f"worker-{int(worker)}" for _, worker in fetched)
            progress.maybe_log(step, float(fetched[-1][0]), force=True)
            reporter.closures(step, by_worker, time.monotonic() - started)
        manager.save(checkpoint_number=step)
        log.info("saved checkpoint for step %d", step)
        if notices.pending():  # the job cannot go on without the chief, nor without a ps
            # Ended before a notified ps hears of the save and ends: the runner's SIGTERMs
            # that follow are its restart, not notices of their own (`tfdist.goodput`).
            reporter.ended(step, "preempted")
            notices.saved(step)
            _release_servers(coordinator, iterator, train_step, step_fn, state, reporter)
            _saved_for_notice(step, own=notices.own)
    notices.close()
    _release_servers(coordinator, iterator, train_step, step_fn, state, reporter)
    finished(step)
    return step


def _log_loss(progress: Progress, start: int, n: int, output: Any) -> None:
    """Log the loss a coordinated step returned, `n` steps after `start`."""
    progress.maybe_log(start + n, float(output[0]))


def _release_servers(*kept: Any) -> None:
    """Get the chief ready for the workers and parameter servers to exit: after this it sends
    them nothing. Training is done, so a failure here is logged, not raised.

    Tearing down what the chief made (the coordinator, the per-worker iterator, functions,
    variables, the summary writer: `kept`) sends the servers messages, and so does the first
    run of an op (TensorFlow registers each eager op as a function on every task). Sent once
    the servers are gone, each fails and TensorFlow logs it as an error. The role's process
    ends right after training (the runtime exits with `os._exit`), so `kept` stays until then;
    what training left for the garbage collector goes now, and its remote work is waited for.
    """
    from tensorflow.python.eager import context

    _UNTIL_EXIT.extend(kept)
    gc.collect()
    try:
        context.async_wait()
    except tf.errors.OpError as error:
        log.warning("remote work still pending after the last step failed: %s", error)
        context.async_clear_error()
