"""`ProviderKubeApi`: the provider's hook and the real `kubernetes` client models, mapped to the
plain dicts and errors of `tfdist.kubernetes.api`.

No Kubernetes API server can run here, so the hook's CoreV1Api is replaced by a small stand-in
that returns the client's own model objects and raises its `ApiException`s.
"""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import (
    ApiClient,
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodList,
    V1PodStatus,
)
from kubernetes.client.exceptions import ApiException

from tfdist.kubernetes.api import JOBSETS, WORKLOADS, AlreadyExists, KubeApiError
from tfdist.kubernetes.pods import Timeouts, read_pod
from tfdist_airflow.kubernetes_api import ProviderKubeApi

CREATED = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _error(status: int, reason: str, message: str = "") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message}) if message else None
    return error


class Core:
    """Stands in for `CoreV1Api`: records calls, answers with client models or errors."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.errors: list[ApiException] = []

    def _answer(self, call: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((call, args, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return None

    def create_namespaced_pod(self, namespace: str, body: Any) -> Any:
        return self._answer("create_pod", namespace, body["metadata"]["name"])

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self._answer("read_pod", name, namespace)
        return V1Pod(
            metadata=V1ObjectMeta(name=name, namespace=namespace, creation_timestamp=CREATED),
            status=V1PodStatus(
                phase="Pending",
                conditions=[
                    V1PodCondition(
                        type="PodScheduled",
                        status="False",
                        reason="Unschedulable",
                        message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    )
                ],
                container_statuses=[
                    V1ContainerStatus(
                        name="tensorflow",
                        image="trainer:1",
                        image_id="",
                        ready=False,
                        restart_count=0,
                        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason="Pending")),
                    )
                ],
            ),
        )

    def delete_namespaced_pod(self, name: str, namespace: str) -> Any:
        return self._answer("delete_pod", name, namespace)

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        self._answer("list_pods", namespace, label_selector=label_selector)
        return V1PodList(items=[V1Pod(metadata=V1ObjectMeta(name="a", labels={"x": "1"}))])

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str) -> Any:
        self._answer("read_log", name, namespace, container=container)
        return "step 1\n"


class Api(ProviderKubeApi):
    """The adapter with a hook whose client is `Core` (a new hook each time it is dropped)."""

    def __init__(self, core: Core) -> None:
        super().__init__("gke")
        self.core_stub = core
        self.hooks_made = 0

    @cached_property
    def hook(self) -> Any:
        self.hooks_made += 1
        client = ApiClient()
        client.rest_client = Rest(self.core_stub)  # type: ignore[assignment]
        return SimpleNamespace(core_v1_client=self.core_stub, api_client=client)


class Rest:
    """Stands in for the `ApiClient`'s REST client below the real `ApiClient`, which builds the
    request: records the URL and query, answers a pod log request with a log as text."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def GET(self, url: str, query_params: Any = None, **kwargs: Any) -> Any:
        try:
            self.core._answer("GET", url, dict(query_params or []))
        except ApiException as error:
            error.body = (error.body or "").encode()  # as the REST client raises it: bytes
            raise
        if url.endswith("/pendingworkloads"):
            return SimpleNamespace(status=200, data=PENDING.encode())
        return SimpleNamespace(status=200, data=b'{"step": 1}\nstep 2 \xe2\x9c\x93\n')


PENDING = json.dumps(
    {
        "kind": "PendingWorkloadsSummary",
        "apiVersion": "visibility.kueue.x-k8s.io/v1beta2",
        "items": [
            {
                "metadata": {"name": "jobset-digits-abc-1a2b3", "namespace": "ml"},
                "priority": 0,
                "localQueueName": "gpu-queue",
                "positionInClusterQueue": 6,
                "positionInLocalQueue": 1,
            }
        ],
    }
)


@pytest.fixture
def core() -> Core:
    return Core()


def test_the_hook_comes_from_the_provider_with_the_connection() -> None:
    hook = ProviderKubeApi("k8s_gke", in_cluster=None, cluster_context="gke_ctx").hook
    assert type(hook).__name__ == "KubernetesHook"
    assert (hook.conn_id, hook.cluster_context) == ("k8s_gke", "gke_ctx")


def test_pods_come_back_as_api_shaped_dicts(core: Core) -> None:
    pod = Api(core).get_pod("ml", "p")
    assert pod is not None
    assert pod["metadata"]["creationTimestamp"] == "2027-01-15T08:00:00+00:00"
    assert pod["status"]["conditions"][0]["reason"] == "Unschedulable"
    state = read_pod(pod, CREATED.timestamp() + 901, Timeouts())
    assert state.detail.startswith("not scheduled within 900 s (scheduling timeout): Unsch")


def test_not_found_is_none_and_deleting_twice_is_fine(core: Core) -> None:
    api = Api(core)
    core.errors = [_error(404, "Not Found"), _error(404, "Not Found"), _error(404, "Not Found")]
    assert api.get_pod("ml", "p") is None
    api.delete_pod("ml", "p")
    assert api.read_pod_log("ml", "p") == ""


def test_a_container_not_started_yet_has_an_empty_log(core: Core) -> None:
    core.errors = [_error(400, "Bad Request", 'container "tensorflow" is waiting to start')]
    assert Api(core).read_pod_log("ml", "p") == ""
    assert Api(core).read_pod_log("ml", "p") == '{"step": 1}\nstep 2 \u2713\n'  # text, as sent
    assert core.calls[-1][1:] == (
        ("/api/v1/namespaces/ml/pods/p/log", {"container": "tensorflow"}),
        {},
    )


def test_a_log_read_from_a_time_on_asks_for_since_time_and_timestamps(core: Core) -> None:
    """The client's `read_namespaced_pod_log` cannot ask for `sinceTime`: the adapter's
    request, built by the real `ApiClient`, carries it."""
    Api(core).read_pod_log("ml", "p", since="2027-01-15T08:00:03Z", timestamps=True)
    assert core.calls[-1][1][1] == {
        "container": "tensorflow",
        "sinceTime": "2027-01-15T08:00:03Z",
        "timestamps": "true",
    }


def test_errors_carry_the_servers_message(core: Core) -> None:
    core.errors = [_error(409, "Conflict", 'pods "p" already exists')]
    with pytest.raises(AlreadyExists, match='create pod p: 409 Conflict: pods "p" already'):
        Api(core).create_pod("ml", {"metadata": {"name": "p"}})
    core.errors = [_error(403, "Forbidden", "exceeded quota: gpu-quota")]
    with pytest.raises(KubeApiError, match="403 Forbidden: exceeded quota: gpu-quota"):
        Api(core).create_pod("ml", {"metadata": {"name": "p"}})


def test_an_expired_token_gets_one_new_client(core: Core) -> None:
    api = Api(core)
    core.errors = [_error(401, "Unauthorized")]
    labels = {"app.kubernetes.io/managed-by": "tfdist", "tfdist.io/launch": "x"}
    assert [pod["metadata"]["name"] for pod in api.list_pods("ml", labels)] == ["a"]
    assert api.hooks_made == 2
    assert [call for call, *_ in core.calls] == ["list_pods", "list_pods"]
    assert core.calls[-1][2] == {
        "label_selector": "app.kubernetes.io/managed-by=tfdist,tfdist.io/launch=x"
    }


class Custom:
    """Stands in for `CustomObjectsApi`: checks each call against the real method's signature
    (and the keyword arguments it documents), answers with plain dicts as the client does."""

    DOCUMENTED = frozenset({"label_selector", "propagation_policy"})

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.errors: list[ApiException] = []

    def _answer(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        from kubernetes.client import CustomObjectsApi

        inspect.signature(getattr(CustomObjectsApi, method)).bind(None, *args, **kwargs)
        assert set(kwargs) <= self.DOCUMENTED
        self.calls.append((method, args, kwargs))
        if self.errors:
            raise self.errors.pop(0)

    def create_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self._answer("create_namespaced_custom_object", args, kwargs)
        return {**args[4], "metadata": {**args[4]["metadata"], "uid": "u1"}}

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self._answer("get_namespaced_custom_object", args, kwargs)
        return {"metadata": {"name": args[4]}, "status": {"restarts": 1}}

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self._answer("list_namespaced_custom_object", args, kwargs)
        return {"items": [{"metadata": {"name": "w"}}]}

    def delete_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self._answer("delete_namespaced_custom_object", args, kwargs)
        return {}


class CustomApi(ProviderKubeApi):
    def __init__(self, custom: Custom) -> None:
        super().__init__("gke")
        self.custom_stub = custom

    @cached_property
    def hook(self) -> Any:
        return SimpleNamespace(custom_object_client=self.custom_stub, api_client=ApiClient())


def test_jobsets_and_workloads_go_through_the_hooks_custom_objects_client() -> None:
    custom = Custom()
    api = CustomApi(custom)
    created = api.create_object(JOBSETS, "ml", {"metadata": {"name": "js"}, "spec": {}})
    assert created["metadata"]["uid"] == "u1"
    assert api.get_object(JOBSETS, "ml", "js") == {
        "metadata": {"name": "js"},
        "status": {"restarts": 1},
    }
    found = api.list_objects(WORKLOADS, "ml", {"kueue.x-k8s.io/job-uid": "u1"})
    assert [obj["metadata"]["name"] for obj in found] == ["w"]
    api.delete_object(JOBSETS, "ml", "js", foreground=True)
    assert [(method, args[:4]) for method, args, _ in custom.calls] == [
        ("create_namespaced_custom_object", ("jobset.x-k8s.io", "v1alpha2", "ml", "jobsets")),
        ("get_namespaced_custom_object", ("jobset.x-k8s.io", "v1alpha2", "ml", "jobsets")),
        ("list_namespaced_custom_object", ("kueue.x-k8s.io", "v1beta2", "ml", "workloads")),
        ("delete_namespaced_custom_object", ("jobset.x-k8s.io", "v1alpha2", "ml", "jobsets")),
    ]
    assert custom.calls[2][2] == {"label_selector": "kueue.x-k8s.io/job-uid=u1"}
    assert custom.calls[3][2] == {"propagation_policy": "Foreground"}


def test_a_missing_jobset_is_none_and_a_taken_name_already_exists() -> None:
    custom = Custom()
    api = CustomApi(custom)
    custom.errors = [_error(404, "Not Found"), _error(404, "Not Found")]
    assert api.get_object(JOBSETS, "ml", "js") is None
    api.delete_object(JOBSETS, "ml", "js")  # already gone: fine
    custom.errors = [_error(409, "Conflict", 'jobsets.jobset.x-k8s.io "js" already exists')]
    with pytest.raises(AlreadyExists, match="create jobsets js: 409 Conflict"):
        api.create_object(JOBSETS, "ml", {"metadata": {"name": "js"}})


def test_the_queue_position_comes_from_kueues_visibility_api(core: Core) -> None:
    api = Api(core)
    pending = api.pending_workloads("ml", "gpu-queue")
    assert core.calls[-1][1][0] == (
        "/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/ml/localqueues/gpu-queue/"
        "pendingworkloads"
    )
    assert [(p["positionInLocalQueue"], p["positionInClusterQueue"]) for p in pending] == [(1, 6)]
    for status, reason in ((404, "Not Found"), (403, "Forbidden"), (503, "Service Unavailable")):
        core.errors = [_error(status, reason)]  # not served, or not allowed: no position shown
        assert api.pending_workloads("ml", "gpu-queue") == []
