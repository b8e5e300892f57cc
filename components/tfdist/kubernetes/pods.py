"""How a pod is doing and how it ended, from the pod as the Kubernetes API returns it.

Pure and clock-injected; the one reading of a pod that every Kubernetes path uses (the roles of
a JobSet, the export pod). A pod that ended is read as the lifecycle reads any end (`RoleEnd`):

- *preempted*: a `DisruptionTarget` condition (the scheduler preempting it, an eviction through
  the API or by the kubelet under node pressure, a node shutting down, a deleted pod's
  taint-manager eviction), or one of the pod reasons that a node stopping it sets
  (`Evicted`, `Terminated`, `Shutdown`, ...); whatever its exit code (137, 143);
- *out of memory*: its container ended `OOMKilled`;
- otherwise its exit code decides: 0 succeeded, 1-127 the program failed, >= 128 a signal.

A pod that has not ended is running or pending; a pending pod says why (waiting for a node, the
scheduler's reason; pulling, or failing to pull, its image), and with `Timeouts` it *never
started* once it waits too long or its image name cannot work (`InvalidImageName`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from tfdist.lifecycle import Ending, RoleEnd
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
    }
)
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"})
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})


class Timeouts(Frozen):
    """How long a pod may wait, sized for GPU node pools that scale up from zero."""

    scheduling_secs: float = Field(default=900, gt=0)  # created -> placed on a node
    startup_secs: float = Field(default=600, gt=0)  # placed -> container running


class Phase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    ENDED = "ended"


class PodState(Frozen):
    """Where a pod is: `end` says how it ended (phase ENDED), `detail` in words (`pending on
    node-1: ErrImagePull: ...`, `running, but its node stopped reporting`)."""

    phase: Phase
    detail: str = ""
    end: RoleEnd | None = None
    ended_at: float | None = None  # its container's `finishedAt`


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as the API writes it."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def any_condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The object's status condition of that type, whatever its status."""
    for found in (obj.get("status") or {}).get("conditions") or ():
        if found.get("type") == kind:
            return dict(found)
    return None


def condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The object's status condition of that type if it is True."""
    found = any_condition(obj or {}, kind)
    return found if found and found.get("status") == "True" else None


def container_state(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("waiting" | "running" | "terminated" | "", details) of the pod's (only) container."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    if not statuses:
        return "", {}
    for kind, details in (statuses[0].get("state") or {}).items():
        if details is not None:
            return str(kind), dict(details)
    return "", {}


def why(parts: Mapping[str, Any]) -> str:
    """`reason: message`, or whichever of them there is."""
    reason, message = parts.get("reason") or "", parts.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def started(pod: Mapping[str, Any]) -> bool:
    """Its container has started (or ended): there is a log to read."""
    return container_state(pod)[0] in ("running", "terminated")


def pod_end(pod: Mapping[str, Any]) -> RoleEnd | None:
    """How the pod ended, or None while it has not."""
    status = pod.get("status") or {}
    kind, container = container_state(pod)
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed") and kind != "terminated":
        return None
    code = container.get("exitCode")
    code = int(code) if code is not None else None
    if phase == "Succeeded" and code is None:
        code = 0
    disruption = condition(pod, "DisruptionTarget")
    preempted = disruption is not None or status.get("reason") in PREEMPTED
    return RoleEnd.from_exit(
        code,
        oom_killed=container.get("reason") == "OOMKilled",
        preempted=preempted,
        detail=(why(status) or why(disruption or {})) if preempted else "",
    )


def read_pod(
    pod: Mapping[str, Any], now: float | None = None, timeouts: Timeouts | None = None
) -> PodState:
    """The pod's state. With `timeouts` (and `now`), a pod waiting too long has ended as
    *never started*; without, it waits as long as it takes (the engine bounds it)."""
    end = pod_end(pod)
    if end is not None:
        return PodState(
            phase=Phase.ENDED,
            detail=end.describe(),
            end=end,
            ended_at=timestamp(container_state(pod)[1].get("finishedAt")),
        )
    status = pod.get("status") or {}
    kind, container = container_state(pod)
    if status.get("phase") == "Unknown":
        return PodState(
            phase=Phase.RUNNING, detail="running, but its node stopped reporting (Unknown)"
        )
    if kind == "running" or status.get("phase") == "Running":
        return PodState(phase=Phase.RUNNING)
    return _pending(pod, container, now, timeouts)


def _pending(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    now: float | None,
    timeouts: Timeouts | None,
) -> PodState:
    created = timestamp((pod.get("metadata") or {}).get("creationTimestamp"))
    scheduled = any_condition(pod, "PodScheduled")
    if not scheduled or scheduled.get("status") != "True":
        reason = why(scheduled or {}) or "waiting for a node"
        if timeouts and now is not None and now - (created or now) > timeouts.scheduling_secs:
            limit = f"not scheduled within {timeouts.scheduling_secs:.0f} s"
            return _never_started(f"{limit} (scheduling timeout): {reason}")
        return PodState(phase=Phase.PENDING, detail=f"pending: {reason}")
    node = (pod.get("spec") or {}).get("nodeName") or "a node"
    reason = container.get("reason") or ""
    what = why(container) or "starting"
    if reason in PULL_ERRORS | FATAL_WAITING:
        image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image", "?")
        what = f"cannot pull image {image}: {what}"
    since = timestamp(scheduled.get("lastTransitionTime")) or created
    late = timeouts and now is not None and now - (since or now) > timeouts.startup_secs
    if reason in FATAL_WAITING or late:
        limit = f" within {timeouts.startup_secs:.0f} s" if late and timeouts else ""
        return _never_started(f"scheduled on {node} but its container did not start{limit}: {what}")
    return PodState(phase=Phase.PENDING, detail=f"pending on {node}: {what}")


def _never_started(detail: str) -> PodState:
    return PodState(
        phase=Phase.ENDED, detail=detail, end=RoleEnd(ending=Ending.NOT_STARTED, detail=detail)
    )


def whole_lines(log: str, offset: int, whole: bool = False) -> tuple[str, int]:
    """The log's whole lines from byte `offset` (all of the rest when `whole`), and the new
    offset; from the start again when the log is shorter (a new pod)."""
    data = log.encode()
    if offset > len(data):
        offset = 0
    end = len(data) if whole else data.rfind(b"\n", offset) + 1
    if end <= offset:
        return "", offset
    return data[offset:end].decode(errors="replace"), end
