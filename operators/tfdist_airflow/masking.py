"""`trainer.env` values are credentials more often than not: Airflow's secrets masker learns
each of them as soon as it is rendered, so logs and rendered fields show `***`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _leaves(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple | set):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None else [str(value)]


def trainer_env_values(job: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Every value `trainer.env` can hold: the spec's own, and whatever an override sets at
    `trainer`, `trainer.env` or `trainer.env.<NAME>` (read as given, valid or not)."""
    trainer = job.get("trainer")
    values = _leaves(trainer.get("env")) if isinstance(trainer, Mapping) else []
    for path, value in overrides.items():
        if path == "trainer" and isinstance(value, Mapping):
            values += _leaves(value.get("env"))
        elif path == "trainer.env" or path.startswith("trainer.env."):
            values += _leaves(value)
    return values


def trainer_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that can change `trainer` (its env among them), as given."""
    return {
        path: value
        for path, value in overrides.items()
        if path == "trainer" or path.startswith("trainer.")
    }


def mask_trainer_env(job: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Register every `trainer.env` value with the secrets masker of this task process (and its
    supervisor, which writes the task log). Values shorter than `[logging]
    min_length_masked_secret` (default 5 characters) stay unmasked: Airflow's rule."""
    from airflow.sdk.log import mask_secret

    for value in trainer_env_values(job, overrides):
        mask_secret(value)
