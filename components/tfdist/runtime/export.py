"""`python -m tfdist.runtime.export --checkpoint PATH --out DIR`: a checkpoint to a SavedModel.

Runs in the trainer environment with `TFDIST_JOB` set, as the role processes do. It builds the
model with the trainer's `build_model`, restores the checkpoint's weights and exports a
SavedModel for TF Serving (a `serve` endpoint and the `serving_default` signature). The model
is written to a staging directory first: a local `DIR` appears by one rename; a remote one
(gs://) gets every file before `saved_model.pb`. A `DIR` that already holds `saved_model.pb`
is left as it is, so a rerun does nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import uuid

from tfdist import rolelog, tflog
from tfdist.runtime.contract import ContractError, RunContext, Trainer, load_trainer
from tfdist.spec import JobSpec

MODULE = "tfdist.runtime.export"
SAVED_MODEL_PB = "saved_model.pb"

log = logging.getLogger("tfdist.export")


def export_command(python: str, checkpoint: str, out: str) -> list[str]:
    """The command a launcher runs (with `TFDIST_JOB` in its environment) to export."""
    return [python, "-m", MODULE, "--checkpoint", checkpoint, "--out", out]


def _is_local(path: str) -> bool:
    return "://" not in path


def export_saved_model(spec: JobSpec, trainer: Trainer, checkpoint: str, out: str) -> bool:
    """Export `checkpoint` to `out`; False when `out` already holds a SavedModel."""
    import tensorflow as tf

    if tf.io.gfile.exists(f"{out}/{SAVED_MODEL_PB}"):
        log.info("%s already holds a SavedModel; nothing to do", out)
        return False
    if _is_local(out) and os.path.exists(out):
        raise FileExistsError(f"--out {out} exists but holds no {SAVED_MODEL_PB}; remove it")
    if not tf.io.gfile.exists(f"{checkpoint}.index"):
        raise FileNotFoundError(
            f"--checkpoint {checkpoint}: no such checkpoint (expected {checkpoint}.index); "
            "pass a checkpoint prefix such as MODEL_DIR/ckpt-400"
        )
    ctx = RunContext(
        model_dir=spec.model_dir,
        data_dir=spec.data_dir,
        task_type="export",
        task_index=0,
        num_workers=1,
    )
    model = trainer.build_model(ctx)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    status = tf.train.Checkpoint(model=model, step=step).restore(checkpoint)
    status.assert_existing_objects_matched().expect_partial()
    log.info("restored %s (step %d)", checkpoint, int(step.numpy()))
    local = _is_local(out)
    staging = f"{out}.tmp-{uuid.uuid4().hex[:8]}" if local else tempfile.mkdtemp()
    try:
        model.export(staging, format="tf_saved_model", verbose=False)
        if local:
            os.rename(staging, out)
        else:
            _upload(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported step %d to %s", int(step.numpy()), out)
    return True


def _upload(local_dir: str, out: str) -> None:
    """Copy a local SavedModel to a remote `out`, `saved_model.pb` last."""
    import tensorflow as tf

    files = [
        os.path.relpath(os.path.join(root, name), local_dir)
        for root, _, names in os.walk(local_dir)
        for name in names
    ]
    for relative in sorted(files, key=lambda name: name == SAVED_MODEL_PB):
        target = f"{out}/{relative}"
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(os.path.join(local_dir, relative), target, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint prefix, e.g. DIR/ckpt-400")
    parser.add_argument("--out", required=True, help="directory for the SavedModel")
    args = parser.parse_args(argv)
    rolelog.setup("export", sys.stdout)
    logging.getLogger("tfdist").setLevel(logging.INFO)
    try:
        spec = JobSpec.model_validate_json(os.environ["TFDIST_JOB"])
    except KeyError:
        print("TFDIST_JOB is not set: export runs with the job's spec", file=sys.stderr)
        return 2
    if spec.trainer.entrypoint is None:
        log.error("the job has no trainer.entrypoint; a `command` trainer exports by itself")
        return 2
    try:
        tflog.quiet_import()
    except tflog.TFLogLevelError as error:
        log.error("%s", error)
        return 2
    try:
        trainer = load_trainer(spec.trainer.entrypoint)
    except ContractError as error:
        log.error("%s", error)
        return 2
    try:
        export_saved_model(spec, trainer, args.checkpoint, args.out)
    except (FileNotFoundError, FileExistsError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
