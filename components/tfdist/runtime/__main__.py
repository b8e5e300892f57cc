"""`python -m tfdist.runtime`: what every role process of an `entrypoint` trainer runs.

Reads the job from `TFDIST_JOB` and the role from `TF_CONFIG`, then trains, serves or evaluates.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from contextlib import suppress
from typing import NoReturn

from tfdist import rolelog, tflog
from tfdist.lifecycle import PREEMPTED_EXIT_CODE
from tfdist.runtime import notice
from tfdist.runtime.contract import ContractError, RunContext, load_trainer
from tfdist.spec import JobSpec
from tfdist.tf_config import TFConfigError, parse_tf_config


def _setup_logging(role: str) -> None:
    """tfdist's progress at INFO; TensorFlow's own logging as `TFDIST_TF_LOG_LEVEL` says
    (default: errors only; see `tfdist.tflog`)."""
    rolelog.setup(role, sys.stdout)
    logging.getLogger("tfdist").setLevel(logging.INFO)
    os.environ.setdefault("AUTOGRAPH_VERBOSITY", "0")


def main() -> int:
    # First of all: in a container this process may be PID 1, which SIGTERM does not kill.
    notice.listen()
    try:
        spec = JobSpec.model_validate_json(os.environ["TFDIST_JOB"])
        config = parse_tf_config(os.environ.get("TF_CONFIG"))
        tflog.min_level()
    except KeyError:
        print("TFDIST_JOB is not set: role processes are started by tfdist", file=sys.stderr)
        return 2
    except TFConfigError as error:
        print(f"invalid TF_CONFIG: {error}", file=sys.stderr)
        return 2
    except tflog.TFLogLevelError as error:
        print(error, file=sys.stderr)
        return 2
    role = "local" if config.mode == "local" else f"{config.task_type}-{config.task_index}"
    _setup_logging(role)
    log = logging.getLogger("tfdist.runtime")
    if config.task_type == "master":
        log.error("TF_CONFIG uses the legacy `master` job; tfdist runs `chief`. Rename it.")
        return 2
    if spec.trainer.entrypoint is None:
        log.error("the job has no trainer.entrypoint; its `command` runs instead of this runtime")
        return 2
    try:
        tflog.quiet_import()  # before the trainer module imports it
        trainer = load_trainer(spec.trainer.entrypoint)
    except ContractError as error:
        log.error("%s", error)
        return 2
    except Exception:
        log.exception("%s: importing trainer.entrypoint %r failed", role, spec.trainer.entrypoint)
        return 1
    ctx = RunContext(
        model_dir=spec.model_dir,
        data_dir=spec.data_dir,
        task_type=config.task_type,
        task_index=config.task_index,
        num_workers=max(config.num_worker_replicas, 1),
    )
    # TensorFlow is imported only here, once the role is known to be valid.
    from tfdist.runtime import evaluate, servers, train

    try:
        if config.mode == "local":
            train.train(spec, trainer, config)
            evaluate.Evaluation(spec, trainer, ctx).run(_latest_checkpoint(spec.model_dir))
        elif config.task_type == "evaluator":
            notice.exit_at_once()  # stateless between checkpoints: nothing to save
            evaluate.run_evaluator(spec, trainer, ctx)
        elif config.task_type == "ps" or (
            config.task_type == "worker" and config.cluster.get("ps")
        ):
            servers.serve_until_done(spec, config)
        else:
            train.train(spec, trainer, config)
    except servers.CannotListen as error:
        log.error("%s", error)
        return 1
    log.info("%s finished", role)
    return 0


def _latest_checkpoint(model_dir: str) -> str:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        raise RuntimeError(f"training wrote no checkpoint to {model_dir}")
    return str(latest)


def _exit_code(stop: SystemExit) -> int:
    """The status `sys.exit(arg)` would have ended the process with."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


def run() -> NoReturn:
    """Run the role, report how it ended, then exit without waiting on TensorFlow's threads."""
    try:
        code = main()
        notice.listen()  # the role is over: a notice from now on is recorded, not raised
    except SystemExit as stop:  # sys.exit(n) in trainer code ends the role with status n
        code = _exit_code(stop)
    except KeyboardInterrupt:  # interrupted, as a shell reports it: 128 + SIGINT
        code = 128 + signal.SIGINT
    except notice.Preempted:  # SIGTERM, and what it asked for is saved
        code = PREEMPTED_EXIT_CODE
    except BaseException:
        traceback.print_exc()
        # After a notice a role fails as its peers go away (a collective op whose peer was
        # stopped): it ended because of the notice, not of its own error.
        code = PREEMPTED_EXIT_CODE if notice.received() else 1
    # A second SIGTERM (the supervisor forwards one, a stop signals the group too) may come
    # while the role reports how it ended: that changes nothing about how it ended.
    with suppress(notice.Preempted):
        sys.stdout.flush()
        sys.stderr.flush()
    # A started tf.distribute.Server has threads that block interpreter shutdown.
    os._exit(code)


if __name__ == "__main__":
    run()
