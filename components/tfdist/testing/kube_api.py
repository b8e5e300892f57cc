"""An in-memory Kubernetes API for tests and demos: pods, their logs and custom objects; no
scheduler, no kubelet (`tfdist.testing.jobset_cluster.FakeJobSetCluster` adds the controllers).

Tests move pods along themselves (`schedule`, `start`, `exit`, `preempt`, ...) and read the
`calls` made. Deleted pods disappear at once, or after `linger` reads, as a terminating pod
does after its grace period.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tfdist.kubernetes.api import AlreadyExists, KubeApiError, Resource
from tfdist.kubernetes.logs import nanoseconds, rfc3339, to_nanoseconds

Key = tuple[str, str]
ObjectKey = tuple[str, str, str]  # (plural, namespace, name)


class FakeKubeApi:
    """Implements `tfdist.kubernetes.api.KubeApi` in memory."""

    def __init__(self, clock: Callable[[], float] = time.time, linger: int = 0):
        self.clock = clock
        self.linger = linger
        self.pods: dict[Key, dict[str, Any]] = {}
        self.logs: dict[Key, list[tuple[float, str]]] = {}  # each line and when it was written
        self.log_bytes = 0  # bytes of logs sent, over every read
        self.objects: dict[ObjectKey, dict[str, Any]] = {}  # custom resources
        self.calls: list[tuple[str, str]] = []  # (verb, object name)
        self.refuse: set[str] = set()  # names whose creation the "server" rejects
        self._terminating: dict[Key, int] = {}
        self._uids = itertools.count(1)

    # -- the KubeApi interface --------------------------------------------------------------
    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        pod = self._create(self.pods, namespace, manifest, "create_pod")
        pod["status"] = {"phase": "Pending"}

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._tick()
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    def delete_pod(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_pod", name))
        key = (namespace, name)
        if key not in self.pods or key in self._terminating:
            return
        if self.linger:
            self.pods[key]["metadata"]["deletionTimestamp"] = self._now()
            self._terminating[key] = self.linger
        else:
            self._remove(key)

    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        self._tick()
        return _matching(self.pods, namespace, labels)

    def read_pod_log(
        self, namespace: str, name: str, since: str | None = None, timestamps: bool = False
    ) -> str:
        entries = self.logs.get((namespace, name), [])
        start = 0
        if since is not None:
            second = nanoseconds(since) or 0
            start = bisect.bisect_left(entries, second, key=lambda entry: to_nanoseconds(entry[0]))
        found = "".join(
            f"{rfc3339(at)} {line}" if timestamps else line for at, line in entries[start:]
        )
        self.log_bytes += len(found.encode())
        return found

    def create_object(
        self, resource: Resource, namespace: str, manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        store = {key[1:]: obj for key, obj in self.objects.items() if key[0] == resource.plural}
        obj = self._create(store, namespace, manifest, f"create_{resource.plural}")
        self.objects[(resource.plural, namespace, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def get_object(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        self._tick()
        obj = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(
        self, resource: Resource, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        self._tick()
        store = {key[1:]: obj for key, obj in self.objects.items() if key[0] == resource.plural}
        return _matching(store, namespace, labels)

    def delete_object(
        self, resource: Resource, namespace: str, name: str, *, foreground: bool = False
    ) -> None:
        self.calls.append((f"delete_{resource.plural}", name))
        self.objects.pop((resource.plural, namespace, name), None)

    # -- what a scheduler, a kubelet or a cloud would do ----------------------------------
    def pod(self, name: str) -> dict[str, Any]:
        """The stored pod of that name, in any namespace (changes show in later reads)."""
        for (_, pod_name), pod in self.pods.items():
            if pod_name == name:
                return pod
        raise KeyError(f"no pod {name!r}; pods: {sorted(n for _, n in self.pods)}")

    def schedule(self, name: str, node: str = "node-1") -> None:
        pod = self.pod(name)
        pod["spec"]["nodeName"] = node
        self._condition(pod, "PodScheduled", "True")
        self._state(pod, "waiting", {"reason": "ContainerCreating"})

    def unschedulable(self, name: str, message: str) -> None:
        self._condition(self.pod(name), "PodScheduled", "False", "Unschedulable", message)

    def wait(self, name: str, reason: str, message: str = "") -> None:
        """The scheduled pod's container waits, e.g. `ImagePullBackOff`."""
        self._state(self.pod(name), "waiting", {"reason": reason, "message": message})

    def start(self, name: str) -> None:
        pod = self.pod(name)
        if "nodeName" not in pod["spec"]:
            self.schedule(name)
        pod["status"]["phase"] = "Running"
        self._state(pod, "running", {"startedAt": self._now()})

    def exit(self, name: str, code: int, reason: str | None = None) -> None:
        pod = self.pod(name)
        pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        default = "Completed" if code == 0 else "Error"
        self._state(pod, "terminated", {"exitCode": code, "reason": reason or default})

    def preempt(
        self,
        name: str,
        reason: str = "Terminated",
        message: str = "Pod was terminated in response to imminent node shutdown.",
        code: int = 143,
    ) -> None:
        """A spot VM reclaimed: the kubelet stops the pod and marks it failed."""
        pod = self.pod(name)
        pod["status"].update(phase="Failed", reason=reason, message=message)
        self._condition(pod, "DisruptionTarget", "True", "TerminationByKubelet", message)
        self._state(pod, "terminated", {"exitCode": code, "reason": "Error"})

    def preempt_by_scheduler(self, name: str, code: int = 137) -> None:
        """The scheduler preempted it for a pod of higher priority: a `DisruptionTarget`
        condition and no pod reason (the kubelet then kills the container)."""
        pod = self.pod(name)
        pod["status"]["phase"] = "Failed"
        message = "Kubernetes default scheduler: preempting to accommodate a higher priority pod"
        self._condition(pod, "DisruptionTarget", "True", "PreemptionByScheduler", message)
        self._state(pod, "terminated", {"exitCode": code, "reason": "Error"})

    def evict_pod(self, name: str, by_api: bool = True) -> None:
        """Evicted through the Eviction API (a drain: SIGTERM, exit 143), or by the kubelet
        under node pressure (pod reason `Evicted`, killed at once: exit 137)."""
        pod = self.pod(name)
        pod["status"]["phase"] = "Failed"
        if by_api:
            self._condition(
                pod, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"
            )
        else:
            message = "The node was low on resource: memory. Threshold quantity: 100Mi."
            pod["status"].update(reason="Evicted", message=message)
            self._condition(pod, "DisruptionTarget", "True", "TerminationByKubelet", message)
        self._state(pod, "terminated", {"exitCode": 143 if by_api else 137, "reason": "Error"})

    def oom(self, name: str) -> None:
        """The kernel killed the container for its memory limit: exit code 137, OOMKilled."""
        self.exit(name, 137, "OOMKilled")

    def vanish(self, name: str) -> None:
        """The pod is removed with its node, without a delete call."""
        self._remove(next(key for key in self.pods if key[1] == name))

    def write_log(self, name: str, text: str) -> None:
        """The container writes `text`; each new line is stamped with the clock's time (a line
        continued from an earlier write keeps its first stamp)."""
        key = next(key for key in self.pods if key[1] == name)
        entries = self.logs.setdefault(key, [])
        pieces = text.splitlines(keepends=True)
        if entries and pieces and not entries[-1][1].endswith("\n"):
            at, line = entries[-1]
            entries[-1] = (at, line + pieces.pop(0))
        now = self.clock()
        entries.extend((now, piece) for piece in pieces)

    # -- internals --------------------------------------------------------------------------
    def _create(
        self,
        store: dict[Key, dict[str, Any]],
        namespace: str,
        manifest: Mapping[str, Any],
        verb: str,
    ) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.calls.append((verb, name))
        if name in self.refuse:
            raise KubeApiError(f"{verb} {name}: refused (forbidden: exceeded quota)")
        if (namespace, name) in store:
            raise AlreadyExists(f"{verb} {name}: already exists")
        obj = copy.deepcopy(dict(manifest))
        obj["metadata"].update(
            namespace=namespace, uid=f"uid-{next(self._uids)}", creationTimestamp=self._now()
        )
        store[(namespace, name)] = obj
        return obj

    def _remove(self, key: Key) -> None:
        self.pods.pop(key, None)
        self.logs.pop(key, None)
        self._terminating.pop(key, None)

    def _tick(self) -> None:
        for key in list(self._terminating):
            self._terminating[key] -= 1
            if self._terminating[key] < 0:
                self._remove(key)

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z")

    def _condition(
        self, pod: dict[str, Any], kind: str, status: str, reason: str = "", message: str = ""
    ) -> None:
        conditions = [c for c in pod["status"].get("conditions", []) if c["type"] != kind]
        condition = {"type": kind, "status": status, "lastTransitionTime": self._now()}
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        pod["status"]["conditions"] = [*conditions, condition]

    def _state(self, pod: dict[str, Any], kind: str, details: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        pod["status"]["containerStatuses"] = [
            {"name": container["name"], "image": container["image"], "state": {kind: details}}
        ]


def _matching(
    store: Mapping[Key, dict[str, Any]], namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [
        copy.deepcopy(obj)
        for (space, _), obj in store.items()
        if space == namespace
        and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
    ]
