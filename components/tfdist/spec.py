"""The job spec: what a user writes to describe one distributed train-and-evaluate job.

Mirrors `tf.estimator.TrainSpec` / `EvalSpec` and the cluster shape of `TF_CONFIG`. Every
validation error names the field and the fix; `load_spec` turns pydantic's errors into one
`SpecError` listing them all, before anything is launched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from tfdist.locations import location_problem

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class SpecError(ValueError):
    """A job spec that cannot run; the message lists every bad field with its fix."""


class Role(StrEnum):
    """The task types of a train-and-evaluate cluster (`master` is legacy and not accepted)."""

    CHIEF = "chief"
    WORKER = "worker"
    PS = "ps"
    EVALUATOR = "evaluator"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _field_error(model: type[BaseModel], field: str, value: Any, message: str) -> ValidationError:
    """An error of a cross-field check, reported at `field` rather than at the whole section."""
    return ValidationError.from_exception_data(
        model.__name__,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=(field,),
                input=value,
            )
        ],
    )


MAX_STEP = 2**63 - 1  # TensorFlow counts steps in an int64


class TrainerSpec(Frozen):
    """What each role runs: a Python module following the tfdist trainer contract, or any program.

    `entrypoint` names a module (for example `tfdist.examples.digits`) that defines the functions
    described in `tfdist.runtime.contract`; tfdist's runtime runs it with estimator semantics.
    `command` is any program that reads `TF_CONFIG` and `MODEL_DIR` from its environment.
    """

    entrypoint: str | None = None
    command: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("entrypoint")
    @classmethod
    def _module_path(cls, value: str | None) -> str | None:
        if value is not None and not MODULE_PATH.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Python module path; write it like `package.module`"
            )
        return value

    @field_validator("command")
    @classmethod
    def _non_empty_command(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("must name a program, for example [python, train.py]")
        return value

    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, value: dict[str, str]) -> dict[str, str]:
        unusable = [name for name in value if not name or "=" in name or "\0" in name]
        if unusable:
            raise ValueError(
                f"{', '.join(map(repr, unusable))} cannot name an environment variable (a name "
                "is not empty and holds no '=' and no NUL); rename it"
            )
        reserved = sorted(set(value) & RESERVED_ENV)
        if reserved:
            verb, pronoun = ("is", "it") if len(reserved) == 1 else ("are", "them")
            raise ValueError(
                f"{', '.join(reserved)} {verb} set by tfdist for each role; remove {pronoun}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError(
                "set exactly one of `entrypoint` (a Python module using the tfdist trainer "
                "contract) or `command` (a program that reads TF_CONFIG)"
            )
        return self


class ClusterSpec(Frozen):
    """How many processes of each role. The evaluator is not part of `TF_CONFIG`'s cluster."""

    chief: int = 1
    worker: int = Field(default=0, ge=0)
    ps: int = Field(default=0, ge=0)
    evaluator: int = Field(default=0, ge=0)

    @field_validator("chief")
    @classmethod
    def _one_chief(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"a cluster has exactly one chief, got {value}; set `chief: 1`")
        return value

    @field_validator("evaluator")
    @classmethod
    def _at_most_one_evaluator(cls, value: int) -> int:
        if value > 1:
            raise ValueError(
                f"there can only be one evaluator, got {value}; set `evaluator: 0` or `1`"
            )
        return value

    @model_validator(mode="after")
    def _ps_needs_workers(self) -> Self:
        if self.ps and not self.worker:
            raise _field_error(
                type(self),
                "ps",
                self.ps,
                "parameter-server training needs at least one worker; set `worker: 1` or more, "
                "or `ps: 0` for all-reduce training",
            )
        return self

    @property
    def uses_parameter_servers(self) -> bool:
        return self.ps > 0

    def count(self, role: Role) -> int:
        return int(getattr(self, role.value))


class TrainSpec(Frozen):
    """`max_steps` is the only stop condition, as in `tf.estimator.TrainSpec`."""

    max_steps: int | None = Field(default=None, gt=0, le=MAX_STEP)
    train_forever: bool = False
    save_checkpoints_steps: int = Field(default=100, gt=0, le=MAX_STEP)
    keep_checkpoint_max: int = Field(default=5, gt=0)
    log_step_count_steps: int = Field(default=50, gt=0, le=MAX_STEP)

    @model_validator(mode="after")
    def _stop_condition(self) -> Self:
        if self.max_steps is None and not self.train_forever:
            raise _field_error(
                type(self),
                "max_steps",
                None,
                "required; set `max_steps` to a positive number, or set "
                "`train_forever: true` to train until the job is stopped",
            )
        if self.max_steps is not None and self.train_forever:
            raise _field_error(
                type(self),
                "max_steps",
                self.max_steps,
                "set either `max_steps` or `train_forever: true`, not both",
            )
        return self


class EvalSpec(Frozen):
    """Defaults are `tf.estimator.EvalSpec`'s: 100 steps, 120 s start delay, 600 s throttle."""

    steps: int | None = Field(default=100, gt=0, le=MAX_STEP)
    name: str | None = None
    start_delay_secs: float = Field(default=120, ge=0)
    throttle_secs: float = Field(default=600, ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("use letters, digits, `_`, `-` or `.` only; it names a directory")
        return value

    @property
    def dir_name(self) -> str:
        """Where eval records and summaries go, as the estimator: `eval` or `eval_<name>`."""
        return f"eval_{self.name}" if self.name else "eval"


class RestartPolicy(Frozen):
    """Restart budgets of a job (see `tfdist.lifecycle` for which restart a role's end gets).

    A crashed evaluator or parameter-server-strategy worker restarts alone, at most
    `max_role_restarts` times each; a crashed chief, ps or all-reduce worker restarts every
    role from the last checkpoint, at most `max_job_restarts` times. Preemptions do not count.

    `grace_period_secs` is how long a role has between SIGTERM (a spot reclaim, a node drain, a
    stop) and SIGKILL: the chief saves a checkpoint in it. The default fits GKE spot nodes
    (about 30 s of notice); it becomes the pods' `terminationGracePeriodSeconds`.
    """

    max_role_restarts: int = Field(default=3, ge=0)
    max_job_restarts: int = Field(default=2, ge=0)
    grace_period_secs: int = Field(default=25, ge=1, le=3600)


class JobSpec(Frozen):
    """One distributed train-and-evaluate job.

    `model_dir` and `data_dir` are local paths (a relative one resolves against the directory
    `tfdist` runs in) or gs://BUCKET/PREFIX; anything else is refused (`tfdist.locations`).
    """

    name: str
    trainer: TrainerSpec
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    train_spec: TrainSpec
    eval_spec: EvalSpec = Field(default_factory=EvalSpec)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    model_dir: str
    data_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if len(value) > 40 or not DNS1123_LABEL.fullmatch(value):
            raise ValueError(
                f"{value!r} must be a DNS-1123 label of at most 40 characters (lowercase "
                "letters, digits and `-`, starting and ending with a letter or digit); "
                "it names processes and pods"
            )
        return value

    @field_validator("model_dir", "data_dir")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = location_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value.rstrip("/") or "/"

    def roles(self) -> list[tuple[Role, int]]:
        """Every (role, index) of the job: chief first, evaluator last."""
        order = (Role.CHIEF, Role.WORKER, Role.PS, Role.EVALUATOR)
        return [(role, i) for role in order for i in range(self.cluster.count(role))]

    def with_overrides(self, changes: Mapping[str, Any]) -> JobSpec:
        """A validated copy with fields replaced by dotted path.

        For example `{"train_spec.max_steps": 10, "model_dir": "/x", "trainer.env.SEED": "1"}`.
        A value replaces the whole field, so `{"cluster": {"worker": 2}}` resets `ps` to 0.
        Raises `SpecError` for a path that names no field and for an invalid value.
        """
        data = self.model_dump()
        for path, value in changes.items():
            parts = path.split(".")
            if not all(parts):
                raise SpecError(f"invalid override {path!r}: write a dotted field path")
            target = data
            for depth, part in enumerate(parts[:-1], start=1):
                child = target.get(part)
                if not isinstance(child, dict):
                    prefix = ".".join(parts[:depth])
                    raise SpecError(
                        f"invalid override {path!r}: {prefix} has no fields; "
                        "name a field of the job spec, for example `train_spec.max_steps`"
                    )
                target = child
            target[parts[-1]] = value
        return parse_spec(data)


# Environment variables tfdist sets for every role process.
RESERVED_ENV = frozenset({"TF_CONFIG", "MODEL_DIR", "TFDIST_JOB", "TFDIST_DATA_DIR"})


# Pydantic messages that do not say what to do, by error type.
_FIXES = {
    "missing": "required; add it",
    "extra_forbidden": "unknown field; remove it or correct its spelling",
}


def dotted(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


def format_errors(
    error: ValidationError,
    title: str,
    *,
    where: Callable[[tuple[int | str, ...]], str] = dotted,
    fix: Callable[[ErrorDetails], str | None] = lambda item: None,
) -> str:
    """Pydantic's errors as `<title>:` and one `  field: what to do` line per bad field.

    `where` names a field from its location; `fix` may word an error better than pydantic.
    """
    lines = []
    for item in error.errors():
        message = (
            fix(item) or _FIXES.get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
        )
        lines.append(f"  {where(item['loc']) or '(all)'}: {message}")
    return f"{title}:\n" + "\n".join(lines)


def parse_spec(data: Any) -> JobSpec:
    """Validate a dict (from YAML, JSON or Python) into a `JobSpec`, or raise `SpecError`."""
    if not isinstance(data, dict):
        raise SpecError("invalid job spec: expected a mapping with `name`, `trainer`, ...")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_errors(error, "invalid job spec")) from None


def load_spec(path: str | Path) -> JobSpec:
    """Read a job spec from a `.yaml`, `.yml` or `.json` file."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not valid YAML/JSON: it is not UTF-8 text") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SpecError(f"{path}: not valid YAML/JSON: {error}") from None
    return parse_spec(data)
