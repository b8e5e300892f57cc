"""Which spec a model directory belongs to: refuse to resume checkpoints with another trainer.

The first launch into a model directory writes `<model_dir>/tfdist/spec-fingerprint.json`; every
later launch (a rerun, a retry, a larger `max_steps`) must carry the same fingerprint. Only what
decides whether a checkpoint can be restored is hashed: the trainer (`entrypoint` or `command`)
and the checkpoint layout of this runtime. `max_steps`, checkpoint frequency, the cluster's size,
the evaluation settings, data and `trainer.env` are left out: raising `max_steps` to train on, or
resizing the cluster, is a legitimate resume (tf.train.Checkpoint restores across strategies).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

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


def claim_model_dir(storage: Storage, spec: JobSpec) -> SpecFingerprint:
    """Tag `spec.model_dir` with the spec's fingerprint, or raise `FingerprintMismatch`.

    Call it before any role starts. The tag is created only if absent, so two launches racing
    into one new directory with different specs cannot both win.
    """
    wanted = spec_fingerprint(spec)
    path = join(spec.model_dir, FINGERPRINT_FILE)
    if storage.create_exclusive(path, wanted.model_dump_json(indent=1)):
        return wanted
    text = storage.read_text(path)
    if not text:  # a launch that died between creating the tag and writing it
        storage.write_text(path, wanted.model_dump_json(indent=1))
        return wanted
    found = SpecFingerprint.model_validate_json(text)
    if found.digest != wanted.digest:
        raise FingerprintMismatch(mismatch_message(spec.model_dir, found, wanted))
    return wanted
