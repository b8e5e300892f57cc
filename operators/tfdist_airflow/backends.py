"""Where role processes run, as plain data that tasks and triggers can pass around.

DAG files import this module: launchers, manifests and the export command are imported
where they are used.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tfdist.kubernetes.placement import JobPlacement
from tfdist.kubernetes.status import Timeouts

if TYPE_CHECKING:
    from tfdist.kubernetes.api import KubeApi
    from tfdist.kubernetes.launcher import KubernetesLauncher
    from tfdist.kubernetes.manifests import Target
    from tfdist.launch.base import JobHandle
    from tfdist.launch.local import LocalLauncher
    from tfdist.spec import JobSpec

EXPORT_TIMEOUT_SECS = 1800  # the export itself, once running


def default_run_root() -> str:
    """`$TFDIST_RUN_ROOT`, else `$AIRFLOW_HOME/tfdist/runs`."""
    if os.environ.get("TFDIST_RUN_ROOT"):
        return os.environ["TFDIST_RUN_ROOT"]
    airflow_home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(airflow_home, "tfdist", "runs")


class LocalBackend(BaseModel):
    """Every role as a process on the Airflow worker's machine (the embedded default).

    `python` is the interpreter that runs the roles; by default the worker's own, which then
    needs the `tfdist[trainer]` extra. The run root must be on a disk that the tasks launching,
    watching and tearing down a job all see (one machine: LocalExecutor or `dags test`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local"] = "local"
    run_root: str | None = None
    python: str | None = None

    def root(self) -> Path:
        return Path(self.run_root or default_run_root())

    def launcher(self, scope: str) -> LocalLauncher:
        from tfdist.launch.local import LocalLauncher

        launcher = LocalLauncher(self.root() / scope)
        if self.python:
            launcher.python = self.python
        return launcher

    def handles(self, scope: str) -> list[JobHandle]:
        """Every launch made in this scope, oldest first."""
        from tfdist.launch.local import load_handle

        paths = sorted((self.root() / scope).glob("*/handle.json"), key=os.path.getmtime)
        return [load_handle(path.parent) for path in paths]

    def cleanup(self, handle: JobHandle) -> None:
        """Nothing: the run directory keeps the roles' logs and exit codes."""

    def run_export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: dict[str, str],
        log: Callable[[str], None],
    ) -> None:
        """Run `python -m tfdist.runtime.export` here with `env` (it needs `TFDIST_JOB`) on top
        of this process's environment; each line of its output goes to `log`."""
        from tfdist.runtime.export import export_command

        command = export_command(self.launcher(scope="").python, checkpoint, out)
        try:
            result = subprocess.run(
                command,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=EXPORT_TIMEOUT_SECS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            for output in (error.stdout, error.stderr):
                text = output.decode(errors="replace") if isinstance(output, bytes) else output
                for line in (text or "").splitlines():
                    log(line)
            raise RuntimeError(f"export did not end within {EXPORT_TIMEOUT_SECS} s") from None
        for line in (result.stdout + result.stderr).splitlines():
            log(line)
        if result.returncode != 0:
            raise RuntimeError(f"export failed with exit code {result.returncode}")

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Nothing: the export is a subprocess of the task, stopped with its process group."""


class KubernetesBackend(BaseModel):
    """Every role as a pod on a Kubernetes cluster (GKE GPU node pools), behind one headless
    Service per launch; `TF_CONFIG` names the pods by their stable DNS names.

    The cncf-kubernetes provider's hook connects: `connection_id` names an Airflow connection
    of type Kubernetes; `in_cluster=True` uses the service account of Airflow's own pod.

    :param image: the trainer image (`docker/trainer.Dockerfile`); a role's placement may
        name another.
    :param placement: node pool, GPUs, spot, resources, service account and secrets per role.
    :param timeouts: how long a pod may stay unscheduled, then not started, before it fails.
    :param cluster_domain: appended to `<role>-<i>.<service>.<namespace>.svc` when set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str = "default"
    connection_id: str | None = "kubernetes_default"
    in_cluster: bool | None = None
    cluster_context: str | None = None
    image: str
    placement: JobPlacement = Field(default_factory=JobPlacement)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    cluster_domain: str | None = None

    @model_validator(mode="after")
    def _valid_target(self) -> KubernetesBackend:
        self.target()  # a bad namespace or domain fails when the DAG is parsed
        return self

    def target(self) -> Target:
        from tfdist.kubernetes.manifests import Target

        return Target(
            namespace=self.namespace,
            image=self.image,
            cluster_domain=self.cluster_domain,
            placement=self.placement,
        )

    def api(self) -> KubeApi:
        from tfdist_airflow.kubernetes_api import ProviderKubeApi

        return ProviderKubeApi(self.connection_id, self.in_cluster, self.cluster_context)

    def launcher(self, scope: str) -> KubernetesLauncher:
        from tfdist.kubernetes.launcher import KubernetesLauncher  # not needed to parse a DAG

        return KubernetesLauncher(self.api(), self.target(), timeouts=self.timeouts, scope=scope)

    def handles(self, scope: str) -> list[JobHandle]:
        """Every launch of this scope still on the cluster, oldest first."""
        return self.launcher(scope).handles()

    def cleanup(self, handle: JobHandle) -> None:
        """Delete every pod and the Service of the launch, finished ones included."""
        self.launcher("").stop(handle)

    def run_export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: dict[str, str],
        log: Callable[[str], None],
    ) -> None:
        """Run the export as a pod of the trainer image, placed as the chief; wait for it,
        stream its log to `log`, delete it. A retry follows or reuses the pod of the one before
        (see `KubernetesLauncher.export`)."""
        try:
            self.launcher("").export(
                handle, spec, checkpoint, out, env, log, timeout_secs=EXPORT_TIMEOUT_SECS
            )
        except RuntimeError as error:
            raise RuntimeError(f"export failed: {error}") from error

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Delete the export pod (a killed export task must not leave it running)."""
        self.launcher("").stop_export(handle, checkpoint)


Backend = LocalBackend | KubernetesBackend
_KINDS: dict[str, type[LocalBackend] | type[KubernetesBackend]] = {
    "local": LocalBackend,
    "kubernetes": KubernetesBackend,
}


def backend_from_dict(data: dict[str, Any]) -> Backend:
    """The backend a dict describes, by its `kind` (default `local`)."""
    kind = data.get("kind", "local")
    if kind not in _KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; use one of {', '.join(_KINDS)}")
    return _KINDS[kind].model_validate(data)
