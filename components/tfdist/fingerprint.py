"""Which spec a model directory belongs to: refuse to resume checkpoints with another trainer.

The first launch into a model directory writes `<model_dir>/tfdist/spec-fingerprint.json`; once
its roles have written anything there (checkpoints, events, records), every later launch (a
rerun, a retry, a larger `max_steps`) must carry the same fingerprint. A directory holding only
the fingerprint (a launch that failed before training) takes the next trainer's. Only what
decides whether a checkpoint can be restored is hashed: the trainer (`entrypoint` or `command`)
and the checkpoint layout of this runtime. `max_steps`, checkpoint frequency, the cluster's size,
the evaluation settings, data and `trainer.env` are left out: raising `max_steps` to train on, or
resizing the cluster, is a legitimate resume (tf.train.Checkpoint restores across strategies).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tfdist.preflight import PROBE_PREFIX
from tfdist.spec import JobSpec
from tfdist.storage import Storage, join

FINGERPRINT_FILE = "tfdist/spec-fingerprint.json"
CHECKPOINT_FORMAT = 1  # the runtime's checkpoint objects: model, optimizer, step


class FingerprintMismatch(ValueError):
    """The model directory was created by a spec whose checkpoints this spec cannot resume."""


class SpecFingerprint(BaseModel):
    """The hashed fields (kept readable for error messages) and their SHA-256."""

    model_config = ConfigDict(frozen=True)

    digest: str
    fields: dict[str, Any]


def fingerprint_fields(spec: JobSpec) -> dict[str, Any]:
    """The parts of a spec that decide whether its checkpoints can be restored."""
    trainer = spec.trainer
    return {
        "checkpoint_format": CHECKPOINT_FORMAT,
        "trainer.entrypoint": trainer.entrypoint,
        "trainer.command": list(trainer.command) if trainer.command is not None else None,
    }


def spec_fingerprint(spec: JobSpec) -> SpecFingerprint:
    fields = fingerprint_fields(spec)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return SpecFingerprint(digest=hashlib.sha256(canonical.encode()).hexdigest(), fields=fields)


def mismatch_message(model_dir: str, found: SpecFingerprint, wanted: SpecFingerprint) -> str:
    """Names each differing field with both values, and the two ways out."""
    changed = sorted(set(found.fields) | set(wanted.fields))
    differences = [
        f"{name} was {found.fields.get(name)!r}, is now {wanted.fields.get(name)!r}"
        for name in changed
        if found.fields.get(name) != wanted.fields.get(name)
    ]
    return (
        f"model_dir {model_dir} holds checkpoints of another trainer "
        f"({'; '.join(differences) or 'fingerprint ' + found.digest[:12]}); resuming them would "
        "mix two models. Use a new model_dir, or delete this one to start over"
    )


def training_output(storage: Storage, model_dir: str) -> list[str]:
    """What roles wrote into `model_dir`: every file but the fingerprint (and a temporary of
    its writing) and preflight probes left behind."""
    tag = join(model_dir, FINGERPRINT_FILE)
    tag_dir, _, tag_name = tag.rpartition("/")

    def ours(path: str) -> bool:
        directory, _, name = path.rpartition("/")
        temporary = directory == tag_dir and name.startswith(f".{tag_name}.")
        return path == tag or temporary or name.startswith(PROBE_PREFIX)

    return [path for path in storage.list(model_dir) if not ours(path)]


def _read(text: str | None) -> SpecFingerprint | None:
    try:
        return SpecFingerprint.model_validate_json(text) if text else None
    except ValidationError:
        return None


def claim_model_dir(storage: Storage, spec: JobSpec) -> SpecFingerprint:
    """Tag `spec.model_dir` with the spec's fingerprint, or raise `FingerprintMismatch`.

    Call it after every other check, right before the roles start. The tag is created only if
    absent, so two launches racing into one new directory with different specs cannot both
    win. Another trainer's tag binds only once its roles wrote something: a launch that failed
    before training never blocks the corrected one.
    """
    wanted = spec_fingerprint(spec)
    path = join(spec.model_dir, FINGERPRINT_FILE)
    if storage.create_exclusive(path, wanted.model_dump_json(indent=1)):
        return wanted
    found = _read(storage.read_text(path))
    if found is not None and found.digest == wanted.digest:
        return wanted
    written = training_output(storage, spec.model_dir)
    if written and found is not None:
        raise FingerprintMismatch(mismatch_message(spec.model_dir, found, wanted))
    if written:
        raise FingerprintMismatch(
            f"model_dir {spec.model_dir} holds a trainer's output ({written[0]}"
            f"{' and more' if len(written) > 1 else ''}) but its fingerprint ({path}) is "
            "unreadable; use a new model_dir, or delete this one to start over"
        )
    storage.write_text(path, wanted.model_dump_json(indent=1))  # nothing trained here yet
    return wanted
