"""Where each role's pod runs and with what: node pool, GPUs, spot, resources, identity, secrets,
and how close together (Kueue topology-aware scheduling).

A placement file is a YAML mapping of role (`chief`, `worker`, `ps`, `evaluator`) to placement,
plus `default` for what every role shares. Every field left out (null) is inherited from
`default`; a role's own value wins. `export` places the one-off export pod like a role; without
it, the export pod is placed as the chief.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import AfterValidator, Field, ValidationError, model_validator

from tfdist.spec import RESERVED_ENV, Frozen, Role, SpecError

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Kueue topology-aware scheduling (Beta, on by default since Kueue 0.14): pod template
# annotations read into the Workload's pod set (site/content/en/docs/concepts/
# topology_aware_scheduling.md; tasks/run/jobsets.md).
REQUIRED_TOPOLOGY = "kueue.x-k8s.io/podset-required-topology"
PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"
# Set by the launcher in every pod, next to the job spec's reserved variables.
POD_ENV = frozenset({"TFDIST_LAUNCH_ID", "PYTHONUNBUFFERED"})


def matching(pattern: re.Pattern[str], what: str, longest: int = 253) -> Any:
    """A validator: `value` must match `pattern` and be at most `longest` characters."""

    def check(value: str) -> str:
        if len(value) > longest or not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


ObjectName = Annotated[
    str, matching(DNS1123_SUBDOMAIN, "a Kubernetes object name (lowercase, -, .)")
]
NodeLabel = Annotated[
    str, matching(LABEL_VALUE, "a node label value (letters, digits, -, _, ., at most 63)", 63)
]
Quantity = Annotated[str, matching(QUANTITY, "a Kubernetes quantity such as 500m, 4, 16Gi")]


class SecretKey(Frozen):
    """One key of a Kubernetes Secret, read into an environment variable at pod start."""

    secret: ObjectName
    key: Annotated[str, Field(min_length=1, pattern=r"^[-._a-zA-Z0-9]+$")]


class Topology(Frozen):
    """How close together Kueue places one role's pods (all replicas of the role).

    :param level: a node label that is a level of the cluster's Kueue `Topology`, e.g. GKE's
        `cloud.google.com/gce-topology-block`, `...-subblock` or `kubernetes.io/hostname`.
    :param required: every pod of the role in one domain of that level, or the role waits in
        the queue; otherwise as few domains as fit (preferred).
    """

    level: Annotated[
        str,
        matching(LABEL_KEY, "a node label key such as cloud.google.com/gce-topology-block", 317),
    ]
    required: bool = False

    def annotations(self) -> dict[str, str]:
        return {REQUIRED_TOPOLOGY if self.required else PREFERRED_TOPOLOGY: self.level}


class RolePlacement(Frozen):
    """Scheduling and runtime settings of one role's pods; None means "inherit"."""

    image: Annotated[str, Field(min_length=1)] | None = None
    node_pool: NodeLabel | None = None
    accelerator: NodeLabel | None = None  # e.g. nvidia-l4
    gpus: int | None = Field(default=None, ge=0)
    spot: bool | None = None
    cpu: Quantity | None = None  # requests
    memory: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_limit: Quantity | None = None
    service_account: ObjectName | None = None  # Workload Identity for gs://
    secret_env: dict[str, SecretKey] | None = None  # VAR -> secret key, never a value
    env_from_secrets: tuple[ObjectName, ...] | None = None  # every key as a variable
    topology: Topology | None = None  # Kueue topology-aware placement (needs a queue)

    @model_validator(mode="after")
    def _env_names(self) -> Self:
        for name in self.secret_env or {}:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"secret_env: {name!r} is not an environment variable name")
            if name in RESERVED_ENV | POD_ENV:
                raise ValueError(f"secret_env: {name} is set by tfdist for each role; rename it")
        return self

    def over(self, base: RolePlacement) -> RolePlacement:
        """This placement's set fields on top of `base`'s."""
        mine = {key: value for key, value in self if value is not None}
        return base.model_copy(update=mine)


class JobPlacement(Frozen):
    """Placement per role kind, on top of `default`."""

    default: RolePlacement = Field(default_factory=RolePlacement)
    chief: RolePlacement | None = None
    worker: RolePlacement | None = None
    ps: RolePlacement | None = None
    evaluator: RolePlacement | None = None
    export: RolePlacement | None = None  # absent: the chief's

    def for_role(self, role: Role) -> RolePlacement:
        own: RolePlacement | None = getattr(self, role.value)
        return own.over(self.default) if own is not None else self.default

    def for_export(self) -> RolePlacement:
        """The export pod's placement: `export` on top of `default`, else the chief's."""
        if self.export is None:
            return self.for_role(Role.CHIEF)
        return self.export.over(self.default)

    @model_validator(mode="after")
    def _accelerators_have_gpus(self) -> Self:
        placements = [(role.value, self.for_role(role)) for role in Role]
        for name, placed in [*placements, ("export", self.for_export())]:
            if placed.accelerator and not placed.gpus:
                raise ValueError(
                    f"{name}: accelerator {placed.accelerator} without gpus; set "
                    f"`gpus: 1` (or more) for {name}, or remove `accelerator`"
                )
        return self


def parse_placement(data: Any) -> JobPlacement:
    """Validate a placement mapping, or raise `SpecError` naming each bad field and its fix."""
    if data is None:
        return JobPlacement()
    if not isinstance(data, dict):
        raise SpecError("invalid placement: expected a mapping of role -> placement")
    try:
        return JobPlacement.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "(placement)"
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown field; use default, chief, worker, ps, evaluator, export and "
                message += "the fields of a role placement (image, node_pool, accelerator, ...)"
            lines.append(f"  {field}: {message}")
        raise SpecError("invalid placement:\n" + "\n".join(lines)) from None


def load_placement(path: str | Path) -> JobPlacement:
    """Read a placement file (YAML or JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise SpecError(f"cannot read placement {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML/JSON: {error}") from None
    return parse_placement(data)
