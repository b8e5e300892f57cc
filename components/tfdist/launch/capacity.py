"""How many role processes this machine can run: the local backend's admission check.

Every role is a TensorFlow process (its own threads, a few hundred MB) with a connection to each
peer, and the launcher holds a port, a log and a process handle per role. A cluster beyond the
machine fails late and badly (`Too many open files` halfway through a launch), so the local
backend refuses it before opening any socket or file, saying which limit and how to change it.
"""

from __future__ import annotations

import os
import resource

from pydantic import BaseModel, ConfigDict, Field

MAX_ROLES_ENV = "TFDIST_MAX_LOCAL_ROLES"
ROLES_PER_CPU = 4
FILES_PER_ROLE = 4  # per role, in the launcher and in every role: a socket to it, logs, handles
FILES_RESERVED = 128  # interpreter, TensorFlow and gRPC's own


class LocalCapacity(BaseModel):
    """The limits of one machine for local roles."""

    model_config = ConfigDict(frozen=True)

    cpus: int = Field(gt=0)
    open_files: int = Field(gt=0)  # the soft RLIMIT_NOFILE, which role processes inherit
    max_roles: int | None = Field(default=None, gt=0)  # an explicit limit replaces the CPU rule

    @property
    def role_limit(self) -> int:
        return self.max_roles if self.max_roles is not None else ROLES_PER_CPU * self.cpus

    @property
    def file_limit(self) -> int:
        return max(0, (self.open_files - FILES_RESERVED) // FILES_PER_ROLE)


def capacity_problem(roles: int, capacity: LocalCapacity) -> str | None:
    """Why `roles` role processes cannot run on this machine, or None. Names `cluster` and the
    way out."""
    if roles > capacity.role_limit:
        limit = (
            f"the limit set: at most {capacity.max_roles}"
            if capacity.max_roles is not None
            else f"{ROLES_PER_CPU} TensorFlow processes per CPU, {capacity.cpus} CPUs: at most "
            f"{capacity.role_limit}"
        )
        return (
            f"cluster: {roles} roles are more than this machine runs locally ({limit}); use "
            "fewer roles, run on Kubernetes, or raise the limit with `tfdist run "
            f"--max-local-roles N` or {MAX_ROLES_ENV}"
        )
    if roles > capacity.file_limit:
        return (
            f"cluster: {roles} roles need about {FILES_PER_ROLE * roles + FILES_RESERVED} open "
            f"files in the launcher and in every role, but the open-file limit here is "
            f"{capacity.open_files} (at most {capacity.file_limit} roles); use fewer roles, run "
            "on Kubernetes, or raise the limit (`ulimit -n`)"
        )
    return None


def machine_capacity(max_roles: int | None = None) -> LocalCapacity:
    """This machine's CPUs (those this process may use) and open-file limit; `max_roles`
    default: `$TFDIST_MAX_LOCAL_ROLES`. Raises `ValueError` for an unusable variable."""
    if max_roles is None and os.environ.get(MAX_ROLES_ENV):
        text = os.environ[MAX_ROLES_ENV]
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{MAX_ROLES_ENV}={text!r}: write a number of roles, 1 or more")
        max_roles = int(text)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_files = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return LocalCapacity(cpus=cpus or 1, open_files=open_files, max_roles=max_roles)
