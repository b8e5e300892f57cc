"""`KubeApi` on a real cluster, through the cncf-kubernetes provider's `KubernetesHook`.

The hook brings the connection handling (an Airflow connection holding a kubeconfig or
`in_cluster`, or the default in-cluster / `~/.kube/config` lookup). The `kubernetes` client and
the provider are imported on first use only, so DAG files that name this backend parse fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, TypeVar

from tfdist.kubernetes.api import AlreadyExists, KubeApiError, Resource
from tfdist.kubernetes.kueue import VISIBILITY
from tfdist.kubernetes.manifests import CONTAINER

T = TypeVar("T")


class ProviderKubeApi:
    """Implements `tfdist.kubernetes.api.KubeApi` with the provider's hook.

    :param conn_id: the Airflow connection (type Kubernetes); `kubernetes_default` falls back
        to in-cluster configuration, then `~/.kube/config`, when it does not exist.
    :param in_cluster: use the service account of the pod Airflow runs in.
    :param cluster_context: the kubeconfig context to use.
    """

    def __init__(
        self,
        conn_id: str | None = "kubernetes_default",
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
    ):
        self.conn_id = conn_id
        self.in_cluster = in_cluster
        self.cluster_context = cluster_context

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(
            conn_id=self.conn_id, in_cluster=self.in_cluster, cluster_context=self.cluster_context
        )

    @property
    def core(self) -> Any:
        return self.hook.core_v1_client

    def _call(
        self,
        what: str,
        request: Callable[[], T],
        missing: T | None = None,
        absent: tuple[int, ...] = (404,),
    ) -> T | None:
        """One request; a status in `absent` gives `missing`; a 401 retries with a new client."""
        from kubernetes.client.exceptions import ApiException

        for attempt in (1, 2):
            try:
                return request()
            except ApiException as error:
                if error.status in absent:
                    return missing
                if error.status == 401 and attempt == 1:
                    self.__dict__.pop("hook", None)  # credentials expire on long jobs
                    continue
                message = f"{what}: {error.status} {error.reason}: {_message(error.body)}"
                if error.status == 409:
                    raise AlreadyExists(message) from None
                raise KubeApiError(message) from None
        raise AssertionError("unreachable")

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.hook.api_client.sanitize_for_serialization(obj))

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        self._call(
            f"create pod {name}", lambda: self.core.create_namespaced_pod(namespace, manifest)
        )

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self._call(f"read pod {name}", lambda: self.core.read_namespaced_pod(name, namespace))
        return self._plain(pod) if pod is not None else None

    def delete_pod(self, namespace: str, name: str) -> None:
        self._call(f"delete pod {name}", lambda: self.core.delete_namespaced_pod(name, namespace))

    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        found = self._call(
            "list pods",
            lambda: self.core.list_namespaced_pod(namespace, label_selector=_selector(labels)),
        )
        return [self._plain(pod) for pod in found.items] if found is not None else []

    def read_pod_log(
        self, namespace: str, name: str, since: str | None = None, timestamps: bool = False
    ) -> str:
        """The log of the pod's trainer container; `since` and `timestamps` as the API's
        `sinceTime` and `timestamps`. The client's `read_namespaced_pod_log` has no
        `since_time`, so the request goes through its `ApiClient` as that method makes it; the
        body is taken as UTF-8 text, never parsed (a log line may well look like JSON)."""
        query: list[tuple[str, str]] = [("container", CONTAINER)]
        if since is not None:
            query.append(("sinceTime", since))
        if timestamps:
            query.append(("timestamps", "true"))

        def request() -> Any:
            return self.hook.api_client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                {"namespace": namespace, "name": name},
                query,
                {"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
            ).data.decode("utf-8", errors="replace")

        text = self._call(
            f"read log of {name}",
            request,
            missing="",
            absent=(400, 404),  # 400: the container has not started yet
        )
        return str(text or "")

    def pending_workloads(self, namespace: str, local_queue: str) -> list[dict[str, Any]]:
        """GET `.../localqueues/<queue>/pendingworkloads` of Kueue's visibility API through the
        client's `ApiClient` (no generated method for it); [] when the API is not served
        (404, 503) or this identity may not read it (403)."""

        def request() -> Any:
            return self.hook.api_client.call_api(
                VISIBILITY + "/namespaces/{namespace}/localqueues/{queue}/pendingworkloads",
                "GET",
                {"namespace": namespace, "queue": local_queue},
                [],
                {"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
            ).data

        found = self._call(
            f"read pending workloads of LocalQueue {local_queue}",
            request,
            missing=None,
            absent=(403, 404, 503),
        )
        return list(json.loads(found).get("items") or []) if found else []

    # -- custom resources: the hook's CustomObjectsApi ------------------------------------
    @property
    def custom(self) -> Any:
        return self.hook.custom_object_client

    def create_object(
        self, resource: Resource, namespace: str, manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        created = self._call(
            f"create {resource.plural} {name}",
            lambda: self.custom.create_namespaced_custom_object(
                resource.group, resource.version, namespace, resource.plural, manifest
            ),
        )
        return dict(created or {})

    def get_object(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._call(
            f"read {resource.plural} {name}",
            lambda: self.custom.get_namespaced_custom_object(
                resource.group, resource.version, namespace, resource.plural, name
            ),
        )
        return dict(found) if found is not None else None

    def list_objects(
        self, resource: Resource, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        found = self._call(
            f"list {resource.plural}",
            lambda: self.custom.list_namespaced_custom_object(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                label_selector=_selector(labels),
            ),
        )
        return [dict(item) for item in (found or {}).get("items", [])]

    def delete_object(
        self, resource: Resource, namespace: str, name: str, *, foreground: bool = False
    ) -> None:
        policy = "Foreground" if foreground else "Background"
        self._call(
            f"delete {resource.plural} {name}",
            lambda: self.custom.delete_namespaced_custom_object(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
                propagation_policy=policy,
            ),
        )


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _message(body: Any) -> str:
    """The API server's own message from an error body (JSON `Status`), else the body."""
    try:
        return str(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(body or "")
