"""From a pod, as the Kubernetes API returns it, to the role's state: pure and clock-injected.

Pending pods fail after a scheduling timeout (never placed on a node, e.g. a GPU pool that
cannot scale up) or a startup timeout (placed but its container never started, e.g. an image
that cannot be pulled), each with the reason Kubernetes gave. A finished role's status says how
it ended in the terms of `tfdist.lifecycle`: a preempted or evicted pod (`DisruptionTarget`,
an eviction reason) is *preempted*, a container killed for its memory (`OOMKilled`) is *out of
memory*, a pod that never started is *not started*; otherwise its exit code decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import Field

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import Ending
from tfdist.spec import Frozen

# Pod `status.reason` values of pods that were stopped from outside, not by their program.
PREEMPTED = frozenset(
    {
        "Evicted",
        "Preempting",
        "Preempted",
        "DeletionByGCPNodeShutdown",
        "NodeShutdown",
        "Shutdown",
        "Terminated",
        "NodeLost",
        "NodeAffinity",
        "OutOfcpu",
        "OutOfmemory",
        "UnexpectedAdmissionError",
    }
)
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"})
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})


class Timeouts(Frozen):
    """How long a pod may wait, sized for GPU node pools that scale up from zero."""

    scheduling_secs: float = Field(default=900, gt=0)  # created -> placed on a node
    startup_secs: float = Field(default=600, gt=0)  # placed -> container running


def _time(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _container_state(pod: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """("waiting" | "running" | "terminated" | "", details) of the pod's (only) container."""
    statuses = pod.get("status", {}).get("containerStatuses") or ()
    if not statuses:
        return "", {}
    for kind, details in (statuses[0].get("state") or {}).items():
        if details is not None:
            return str(kind), details
    return "", {}


def _why(parts: Mapping[str, Any]) -> str:
    reason, message = parts.get("reason") or "", parts.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def pod_status(
    name: str, pod: Mapping[str, Any] | None, now: float, timeouts: Timeouts
) -> RoleStatus:
    """The `RoleStatus` of role `name` whose pod is `pod` (None: there is no such pod)."""
    if pod is None:
        return RoleStatus(
            name=name,
            state=RoleState.FAILED,
            detail="its pod is gone: deleted, or removed with its node (spot preemption?)",
        )
    status = pod.get("status", {})
    phase = status.get("phase") or "Pending"
    kind, container = _container_state(pod)
    if phase in ("Succeeded", "Failed") or kind == "terminated":
        return _ended(name, pod, container)
    if phase == "Unknown":
        return RoleStatus(
            name=name, state=RoleState.RUNNING, detail="its node stopped reporting (Unknown)"
        )
    if kind == "running":
        return RoleStatus(name=name, state=RoleState.RUNNING)
    return _pending(name, pod, now, timeouts, container)


def _ended(name: str, pod: Mapping[str, Any], container: Mapping[str, Any]) -> RoleStatus:
    """How the pod ended, and when (its container's `finishedAt`, if it says)."""
    ended = _ended_without_time(name, pod, container)
    finished = container.get("finishedAt")
    if not finished:
        return ended
    at = datetime.fromisoformat(str(finished).replace("Z", "+00:00")).timestamp()
    return ended.model_copy(update={"ended_at": at})


def _ended_without_time(
    name: str, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> RoleStatus:
    status = pod.get("status", {})
    code = container.get("exitCode")
    code = int(code) if code is not None else None
    phase = status.get("phase")
    if phase == "Succeeded" or (phase != "Failed" and code == 0):
        return RoleStatus(name=name, state=RoleState.SUCCEEDED, exit_code=0)
    disruption = _condition(pod, "DisruptionTarget")
    reason = status.get("reason") or ""
    if reason in PREEMPTED or (disruption and disruption.get("status") == "True"):
        why = _why(status) or _why(disruption or {})
        return RoleStatus(
            name=name,
            state=RoleState.FAILED,
            exit_code=code if code is not None and code >= 128 else None,
            detail=f"preempted ({why}); container exit code {code}",
            ending=Ending.PREEMPTED,
        )
    return RoleStatus(
        name=name,
        state=RoleState.FAILED,
        exit_code=code,
        detail=_why(container) or _why(status) or "the pod failed",
        ending=Ending.OOM_KILLED if container.get("reason") == "OOMKilled" else None,
    )


def _pending(
    name: str,
    pod: Mapping[str, Any],
    now: float,
    timeouts: Timeouts,
    container: Mapping[str, Any],
) -> RoleStatus:
    created = _time(pod.get("metadata", {}).get("creationTimestamp")) or now
    scheduled = _condition(pod, "PodScheduled")
    if not scheduled or scheduled.get("status") != "True":
        why = _why(scheduled or {}) or "waiting for a node"
        waited = now - created
        if waited > timeouts.scheduling_secs:
            return RoleStatus(
                name=name,
                state=RoleState.FAILED,
                detail=f"not scheduled within {timeouts.scheduling_secs:.0f} s "
                f"(scheduling timeout): {why}",
                ending=Ending.NOT_STARTED,
            )
        return RoleStatus(
            name=name, state=RoleState.PENDING, detail=f"waiting to be scheduled: {why}"
        )
    since = _time(scheduled.get("lastTransitionTime")) or created
    node = pod.get("spec", {}).get("nodeName") or "a node"
    reason = container.get("reason") or ""
    why = _why(container) or "starting"
    if reason in PULL_ERRORS | FATAL_WAITING:
        image = pod.get("spec", {}).get("containers", [{}])[0].get("image", "?")
        why = f"cannot pull image {image}: {why}"
    if reason in FATAL_WAITING or now - since > timeouts.startup_secs:
        limit = "" if reason in FATAL_WAITING else f" within {timeouts.startup_secs:.0f} s"
        return RoleStatus(
            name=name,
            state=RoleState.FAILED,
            detail=f"scheduled on {node} but its container did not start{limit}: {why}",
            ending=Ending.NOT_STARTED,
        )
    return RoleStatus(name=name, state=RoleState.PENDING, detail=f"on {node}: {why}")
