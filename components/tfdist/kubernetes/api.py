"""The few Kubernetes API calls the JobSet backend makes, as an interface over plain dicts.

Objects go in and come out in the API's JSON shape (camelCase keys, RFC 3339 timestamps), as
`kubectl get -o json` shows them. `tfdist.testing.kube_api.FakeKubeApi` keeps them in memory;
`tfdist_airflow.kubernetes_api.ProviderKubeApi` calls a cluster through the cncf-kubernetes
provider's hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol


class KubeApiError(RuntimeError):
    """A request the API server refused."""


class AlreadyExists(KubeApiError):
    """An object of that name exists (perhaps still being deleted)."""


class Resource(NamedTuple):
    """A custom resource's API group, version and plural name, as in its URL."""

    group: str
    version: str
    plural: str


JOBSETS = Resource("jobset.x-k8s.io", "v1alpha2", "jobsets")
WORKLOADS = Resource("kueue.x-k8s.io", "v1beta2", "workloads")


class KubeApi(Protocol):
    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod, or None if there is none of that name."""
        ...

    def delete_pod(self, namespace: str, name: str) -> None:
        """Ask for deletion; no error if the pod is already gone."""
        ...

    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods carrying every one of `labels`."""
        ...

    def read_pod_log(
        self, namespace: str, name: str, since: str | None = None, timestamps: bool = False
    ) -> str:
        """The pod's log so far; empty before its container started or once it is gone.
        `since` (RFC 3339): only the lines from that second on; `timestamps`: each line after
        its RFC 3339 timestamp with nanoseconds and a space (`tfdist.kubernetes.logs`)."""
        ...

    def pending_workloads(self, namespace: str, local_queue: str) -> list[dict[str, Any]]:
        """The LocalQueue's pending Workloads with their positions (Kueue's visibility API,
        `PendingWorkload` items); empty where that API is not served or not allowed."""
        ...

    # -- custom resources (JobSets, Kueue Workloads) ---------------------------------------
    def create_object(
        self, resource: Resource, namespace: str, manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create it; the object as stored (with its uid). `AlreadyExists` if the name is taken."""
        ...

    def get_object(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if there is none of that name."""
        ...

    def list_objects(
        self, resource: Resource, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The objects carrying every one of `labels`."""
        ...

    def delete_object(
        self, resource: Resource, namespace: str, name: str, *, foreground: bool = False
    ) -> None:
        """Ask for deletion (`foreground`: the object stays until its dependents, such as a
        JobSet's Jobs and pods, are gone); no error if it is already gone."""
        ...
