"""A one-off pod run to its end (the export pod): created once, followed, deleted.

The pod is named after what it does, so a retry of the task that runs it follows a pod still
running, or takes one that already succeeded, rather than start another. A pod that is not
scheduled or not started in time (`Timeouts`), or cannot pull its image, has failed: nothing
else would end it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tfdist.kubernetes.api import AlreadyExists, KubeApi, KubeApiError
from tfdist.kubernetes.pods import Phase, PodState, Timeouts, read_pod, timestamp, whole_lines
from tfdist.lifecycle import Ending


class OneOffPod:
    """Runs one-off pods in `namespace` through `api`.

    :param timeouts: how long the pod may wait for a node, then for its container to start.
    :param delete_wait_secs: how long to wait for an old pod of the same name to be gone.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        *,
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        delete_wait_secs: float = 120.0,
    ):
        self.api = api
        self.namespace = namespace
        self.timeouts = timeouts or Timeouts()
        self.clock = clock
        self.sleep = sleep
        self.delete_wait_secs = delete_wait_secs

    def state(self, pod: Mapping[str, Any] | None) -> PodState:
        if pod is None:
            return PodState(phase=Phase.ENDED, detail="its pod is gone (deleted?)")
        return read_pod(pod, self.clock(), self.timeouts)

    def run(
        self,
        manifest: Mapping[str, Any],
        log: Callable[[str], None],
        *,
        poll_secs: float = 5.0,
        timeout_secs: float | None = None,
    ) -> None:
        """Run the pod to its end, pass each line of its log to `log`, then delete it.

        A pod of the same name and command that is pending or running is followed, one that
        succeeded is taken as done; a failed one is replaced. Raises `RuntimeError` when the
        pod fails, is not scheduled or started in time, or runs longer than `timeout_secs`.
        The pod is deleted in every case.
        """
        name = manifest["metadata"]["name"]
        self._adopt_or_create(manifest, log)
        try:
            state = self._follow(name, log, poll_secs, timeout_secs)
        finally:
            try:
                self.api.delete_pod(self.namespace, name)
            except KubeApiError as error:
                log(f"could not delete pod {name}: {error}")
        if state.end is None or state.end.ending is not Ending.SUCCEEDED:
            raise RuntimeError(f"pod {name} failed: {state.detail or 'no reason given'}")

    def _adopt_or_create(self, manifest: Mapping[str, Any], log: Callable[[str], None]) -> None:
        name = manifest["metadata"]["name"]
        old = self.api.get_pod(self.namespace, name)
        if old is not None and not old["metadata"].get("deletionTimestamp"):
            state = self.state(old)
            same = _command(old) == _command(manifest)
            succeeded = state.end is not None and state.end.ending is Ending.SUCCEEDED
            if same and succeeded:
                log(f"pod {name} of an earlier try succeeded; taking its result")
                return
            if same and state.phase is not Phase.ENDED:
                log(f"pod {name} of an earlier try is {state.phase.value}; following it")
                return
            if state.phase is not Phase.ENDED:
                raise RuntimeError(
                    f"pod {name} is still running another command ({' '.join(_command(old))}); "
                    "wait for it to end or delete it"
                )
            why = state.detail if same else "ran another command"
            log(f"pod {name} of an earlier try ended ({why}); starting it again")
            self.api.delete_pod(self.namespace, name)
        if old is not None and not self._await_gone(name):
            raise KubeApiError(
                f"pod {name} is still being deleted after {self.delete_wait_secs:.0f} s; "
                "retry once it is gone"
            )
        try:
            self.api.create_pod(self.namespace, manifest)
        except AlreadyExists:
            log(f"pod {name} was created meanwhile by another try; following it")
            return
        log(f"created pod {name}")

    def _follow(
        self, name: str, log: Callable[[str], None], poll_secs: float, timeout_secs: float | None
    ) -> PodState:
        offset, shown, began = 0, "", None
        while True:
            pod = self.api.get_pod(self.namespace, name)
            state = self.state(pod)
            ended = state.phase is Phase.ENDED
            text, offset = whole_lines(
                self.api.read_pod_log(self.namespace, name), offset, whole=ended
            )
            for line in text.splitlines():
                log(line)
            if ended:
                return state
            if state.detail and state.detail != shown:
                log(f"pod {name} {state.detail}")
                shown = state.detail
            if state.phase is Phase.RUNNING and timeout_secs is not None:
                began = began or _started_at(pod) or self.clock()
                if self.clock() - began > timeout_secs:
                    raise RuntimeError(
                        f"pod {name} still running after {timeout_secs:.0f} s; stopped it"
                    )
            self.sleep(poll_secs)

    def _await_gone(self, name: str) -> bool:
        deadline = self.clock() + self.delete_wait_secs
        while self.api.get_pod(self.namespace, name) is not None:
            if self.clock() >= deadline:
                return False
            self.sleep(1.0)
        return True


def _command(pod: Mapping[str, Any]) -> list[str]:
    containers = pod.get("spec", {}).get("containers") or [{}]
    return list(containers[0].get("command") or [])


def _started_at(pod: Mapping[str, Any] | None) -> float | None:
    """When the pod's container started running, from its status."""
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
    return timestamp((statuses[0].get("state") or {}).get("running", {}).get("startedAt"))
