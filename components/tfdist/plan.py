"""Planning: from a `JobSpec` and role addresses to what each role process is started with.

Pure: no processes, files or network. Launchers supply the addresses (free local ports, or
stable Kubernetes DNS names) and run the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from tfdist.lifecycle import RoleId
from tfdist.spec import Frozen, JobSpec, Role
from tfdist.tf_config import build_tf_config

RUNTIME_MODULE = "tfdist.runtime"


class RolePlan(Frozen):
    """One role process: its identity, its command and its environment."""

    role: Role
    index: int
    address: str | None  # None for the evaluator: it serves nothing
    command: tuple[str, ...]
    env: dict[str, str]

    @property
    def name(self) -> str:
        """`chief-0`, `worker-1`, ...: the label of the role in logs, tasks and pods."""
        return self.id.name

    @property
    def id(self) -> RoleId:
        return RoleId(kind=self.role, index=self.index)

    @property
    def tf_config(self) -> dict[str, object]:
        return dict(json.loads(self.env["TF_CONFIG"]))


class JobPlan(Frozen):
    """Every role of one job, chief first. A backend's plan also says which launch it is:
    `scope` (the step it belongs to, such as `<dag>/<run>/<group>`) and `launch_id`."""

    spec: JobSpec
    cluster: dict[str, list[str]]
    roles: tuple[RolePlan, ...]
    scope: str = ""
    launch_id: str = ""

    def role(self, name: str) -> RolePlan:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"no role {name!r} in job {self.spec.name!r}; roles: {self.role_names}")

    @property
    def role_names(self) -> list[str]:
        return [role.name for role in self.roles]


def role_command(spec: JobSpec, python: str = "python") -> tuple[str, ...]:
    """What a role process runs: tfdist's runtime for an entrypoint, else the user's command."""
    if spec.trainer.command is not None:
        return spec.trainer.command
    return (python, "-m", RUNTIME_MODULE)


def plan(
    spec: JobSpec,
    addresses: Mapping[str, Sequence[str]],
    python: str = "python",
    *,
    scope: str = "",
    launch_id: str = "",
) -> JobPlan:
    """Build every role's `TF_CONFIG` and environment.

    `addresses` maps each training role (chief, worker, ps) to one address per replica; the
    evaluator needs none and is left out of the cluster, as `train_and_evaluate` expects.
    """
    cluster: dict[str, list[str]] = {}
    for role in (Role.CHIEF, Role.WORKER, Role.PS):
        wanted = spec.cluster.count(role)
        given = list(addresses.get(role.value, ()))
        if len(given) != wanted:
            raise ValueError(f"{role.value}: {wanted} replicas but {len(given)} addresses")
        if wanted:
            cluster[role.value] = given
    command = role_command(spec, python)
    base_env = {
        **spec.trainer.env,
        "MODEL_DIR": spec.model_dir,
        "TFDIST_JOB": spec.model_dump_json(),
    }
    if spec.data_dir:
        base_env["TFDIST_DATA_DIR"] = spec.data_dir
    roles = []
    for role, index in spec.roles():
        tf_config = build_tf_config(cluster, role.value, index)
        roles.append(
            RolePlan(
                role=role,
                index=index,
                address=None if role is Role.EVALUATOR else cluster[role.value][index],
                command=command,
                env={**base_env, "TF_CONFIG": json.dumps(tf_config, sort_keys=True)},
            )
        )
    return JobPlan(spec=spec, cluster=cluster, roles=tuple(roles), scope=scope, launch_id=launch_id)
