"""Where role processes run, as plain data that tasks and triggers can pass around.

Each configuration's `connect()` gives the `tfdist.backend.Backend` every task and trigger
uses. `backend_from_dict` reads any of them from its dict by `kind`. DAG files import this
module: launchers, manifests and the export command are imported where they are used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from tfdist.capabilities import FAKE, JOBSET, LOCAL, Capabilities
from tfdist.kubernetes.kueue import Kueue
from tfdist.kubernetes.placement import JobPlacement
from tfdist.kubernetes.pods import Timeouts
from tfdist.lifecycle import RoleId
from tfdist.spec import Frozen, Role, dotted, format_errors

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from tfdist.backend import Backend
    from tfdist.kubernetes.api import KubeApi
    from tfdist.kubernetes.jobset_launcher import JobSetLauncher
    from tfdist.kubernetes.manifests import Target
    from tfdist.launch.local import LocalLauncher
    from tfdist.testing import FakeBackend


def default_run_root() -> str:
    """`$TFDIST_RUN_ROOT`, else `$AIRFLOW_HOME/tfdist/runs`."""
    if os.environ.get("TFDIST_RUN_ROOT"):
        return os.environ["TFDIST_RUN_ROOT"]
    airflow_home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(airflow_home, "tfdist", "runs")


class LocalBackend(Frozen):
    """Every role as a process on the Airflow worker's machine (the embedded default).

    `python` is the interpreter that runs the roles; by default the worker's own, which then
    needs the `tfdist[trainer]` extra. The run root must be on a disk that the tasks launching,
    watching and tearing down a job all see (one machine: LocalExecutor or `dags test`).
    """

    kind: Literal["local"] = "local"
    run_root: str | None = None
    python: str | None = None
    warm_standby: bool = False  # restart roles in under a second (`tfdist.launch.local`)

    capabilities: ClassVar[Capabilities] = LOCAL

    def role_log_url(self, handle: dict[str, Any], role: str, project: str) -> str:
        """Nothing beyond the watch task's own log."""
        return ""

    def connect(self) -> LocalLauncher:
        from tfdist.launch.local import LocalLauncher

        return LocalLauncher(
            self.run_root or default_run_root(),
            python=self.python,
            standby=True if self.warm_standby else None,  # else `$TFDIST_LOCAL_STANDBY`
        )


# Where a cluster has no JobSet controller: its one manifest installs it (README, "Running on
# GKE"); the raw-pod backend that once stood in for it is gone.
INSTALL_JOBSET = (
    "kubectl apply --server-side -f "
    "https://github.com/kubernetes-sigs/jobset/releases/download/v0.12.0/manifests.yaml"
)
RETIRED = (
    "backend kind 'kubernetes' (a pod per role, restarted by Airflow) is no longer offered; "
    "use kind: jobset (JobSetBackend): the same connection, namespace, image and placement "
    f"fields, and the cluster restarts roles itself. A cluster without JobSet installs it "
    f"with `{INSTALL_JOBSET}`"
)


class JobSetBackend(Frozen):
    """Every launch as one JobSet (`jobset.x-k8s.io/v1alpha2`) on a Kubernetes cluster, admitted
    as one gang by Kueue when `kueue.queue_name` names a LocalQueue. The lifecycle policy is
    compiled into the JobSet, so the cluster's controllers restart roles, or fail or finish the
    job, also while Airflow is down; the watch tasks report what they do. Needs JobSet (and
    Kueue) installed: see "Running on GKE" in the README.

    The cncf-kubernetes provider's hook connects: `connection_id` names an Airflow connection
    of type Kubernetes; `in_cluster=True` uses the service account of Airflow's own pod.
    Pending role pods are never failed by a timeout here (bound the wait with Kueue's
    `waitForPodsReady`); the export pod is (`timeouts`).

    :param image: the trainer image (`docker/trainer.Dockerfile`); a role's placement may
        name another.
    :param placement: node pool, GPUs, spot, resources, service account and secrets per role.
    :param cluster_domain: appended to the pods' DNS names (`...svc`) when set.
    :param kueue: queue, WorkloadPriorityClass and `provreq.kueue.x-k8s.io/*` annotations.
    :param ttl_secs_after_finished: the controller deletes a finished JobSet after this long.
    :param shared_read_secs: how long the watches of one triggerer share one read of a JobSet,
        its pods and its Workload (two or three requests for all roles).
    :param timeouts: how long the export pod may wait for a node, then for its container.
    """

    kind: Literal["jobset"] = "jobset"
    namespace: str = "default"
    connection_id: str | None = "kubernetes_default"
    in_cluster: bool | None = None
    cluster_context: str | None = None
    image: str
    placement: JobPlacement = Field(default_factory=JobPlacement)
    cluster_domain: str | None = None
    kueue: Kueue = Field(default_factory=Kueue)
    ttl_secs_after_finished: int = Field(default=86400, ge=0)
    shared_read_secs: float = Field(default=1.0, ge=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    capabilities: ClassVar[Capabilities] = JOBSET

    @model_validator(mode="after")
    def _valid_target(self) -> Self:
        self.target()  # a bad namespace or domain fails when the DAG is parsed
        placed = [(role, self.placement.for_role(role)) for role in Role]
        asking = [role.value for role, placement in placed if placement.topology is not None]
        if asking and not self.kueue.queue_name:
            raise ValueError(
                f"placement: the topology of {', '.join(asking)} is honoured by Kueue's "
                "topology-aware scheduling only; set kueue=Kueue(queue_name=...) or remove "
                "`topology`"
            )
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

    def role_log_url(self, handle: dict[str, Any], role: str, project: str) -> str:
        """Cloud Logging for `role`'s pods of a launch (its handle as XCom keeps it)."""
        from tfdist.kubernetes.jobset import hostname
        from tfdist_airflow.view.urls import pod_logs_url

        job_id = str(handle.get("job_id", ""))
        if "/" not in job_id:
            return ""
        namespace, name = job_id.split("/", 1)
        rid = RoleId.parse(role)
        pod = f"{hostname(name, rid.kind.value, rid.index)}-"
        return pod_logs_url(namespace, pod, project, prefix=True)

    def connect(self) -> JobSetLauncher:
        from tfdist.kubernetes.jobset import JobSetOptions
        from tfdist.kubernetes.jobset_launcher import JobSetLauncher, Snapshots

        options = JobSetOptions(
            kueue=self.kueue, ttl_secs_after_finished=self.ttl_secs_after_finished
        )
        # The watch tasks of one triggerer share what they read of each JobSet.
        key = (self.connection_id, self.in_cluster, self.cluster_context, self.shared_read_secs)
        snapshots = _SNAPSHOTS.setdefault(key, Snapshots(self.shared_read_secs))
        return JobSetLauncher(
            self.api(), self.target(), options, snapshots=snapshots, timeouts=self.timeouts
        )


_SNAPSHOTS: dict[tuple[str | None, bool | None, str | None, float], Any] = {}


class FakeBackendConfig(Frozen):
    """The in-memory `tfdist.testing.FakeBackend` of this process called `name` (for tests:
    the tasks and the triggers of `airflow dags test` run in one process)."""

    kind: Literal["fake"] = "fake"
    name: str = "default"

    capabilities: ClassVar[Capabilities] = FAKE

    def role_log_url(self, handle: dict[str, Any], role: str, project: str) -> str:
        return ""

    def connect(self) -> FakeBackend:
        from tfdist.testing import FakeBackend

        return FakeBackend.named(self.name)


BackendConfig = Annotated[
    LocalBackend | JobSetBackend | FakeBackendConfig,
    Field(discriminator="kind"),
]
_CONFIG: TypeAdapter[LocalBackend | JobSetBackend | FakeBackendConfig] = TypeAdapter(BackendConfig)


def backend_from_dict(
    data: dict[str, Any],
) -> LocalBackend | JobSetBackend | FakeBackendConfig:
    """The backend configuration a dict describes, by its `kind` (default `local`)."""
    if data.get("kind") == "kubernetes":
        raise ValueError(f"invalid backend: kind: {RETIRED}")
    try:
        return _CONFIG.validate_python({"kind": "local", **data})
    except ValidationError as error:
        raise ValueError(
            format_errors(
                error, "invalid backend", where=lambda loc: dotted(loc) or "kind", fix=_fix
            )
        ) from None


def _fix(item: ErrorDetails) -> str | None:
    if item["type"] == "union_tag_invalid":
        tags = item.get("ctx", {}).get("expected_tags", "")
        return f"unknown backend kind {item['input']['kind']!r}; use one of {tags}"
    return None


def storage_cluster(
    config: LocalBackend | JobSetBackend | FakeBackendConfig,
) -> str | None:
    """The backend's kind when its roles do not see this machine's disk (local paths are then
    refused: `tfdist.locations.check_locations`), else None."""
    return None if config.capabilities.shared_storage else config.kind


def connect(data: dict[str, Any]) -> Backend:
    """The backend a task's or trigger's `backend` dict describes, ready to use."""
    return backend_from_dict(data).connect()


def __getattr__(name: str) -> Any:
    if name == "KubernetesBackend":
        raise ImportError(f"KubernetesBackend: {RETIRED}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
