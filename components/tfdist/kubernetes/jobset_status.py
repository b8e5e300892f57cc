"""From a JobSet, its pods and its Kueue Workload to each role's state, in a user's words.

Pure. A role's *current* pod is the newest pod of its replica (`replicatedjob-name`,
`job-index`) in the JobSet's current restart attempt (`restart-attempt` label equal to
`status.restarts`): the JobSet controller recreates every Job on a job restart, and a role that
restarts alone gets a new pod in the same Job. How a pod ended is read as the lifecycle reads
any end (`RoleEnd`: exit code, OOM-killed, preempted), and `lifecycle.decide` words what the
compiled policy is doing about it ("restarting: ...", "ending the job: ..."). A role is FAILED
only once the cluster says so (the JobSet's `Failed` condition): the supervisor reads what the
cluster did, it does not predict it.

While a role waits, `detail` says why: queued in Kueue (queue, reason), admitted and waiting
for nodes (admission checks such as a provisioning request), pod pending (reason), or
restarting (restart k of n, and why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from tfdist.backend import RoleState, RoleStatus
from tfdist.kubernetes.jobset import (
    JOB_INDEX,
    REPLICATED_JOB,
    RESTART_ATTEMPT,
)
from tfdist.kubernetes.kueue import QUEUE_NAME, QueuePosition
from tfdist.kubernetes.names import LAUNCH
from tfdist.kubernetes.pods import (
    Phase,
    any_condition,
    condition,
    pod_end,
    read_pod,
    timestamp,
    why,
)
from tfdist.lifecycle import (
    Action,
    Ending,
    RoleEnd,
    RoleId,
    Scope,
    Verdict,
    decide,
    restart_scope,
)
from tfdist.records import Admission
from tfdist.spec import JobSpec

_FIRST_FAILED = re.compile(r"\(first failed job: ([^)]+)\)")


class RoleView(BaseModel):
    """A role's status, and the pod whose log is the role's log now (None: no pod yet)."""

    model_config = ConfigDict(frozen=True)

    status: RoleStatus
    pod: str | None = None


def suspended(jobset: Mapping[str, Any]) -> bool:
    return bool(jobset.get("spec", {}).get("suspend")) or condition(jobset, "Suspended") is not None


class PodIndex:
    """A JobSet's pods by replica and restart attempt, each list oldest first. Creation times
    have a resolution of one second, so of two pods created in the same second the one that
    has not ended is the newer (a Job runs one pod at a time)."""

    def __init__(self, pods: Sequence[Mapping[str, Any]]):
        self._found: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            key = (
                labels.get(REPLICATED_JOB, ""),
                labels.get(JOB_INDEX, ""),
                labels.get(RESTART_ATTEMPT, "0"),
            )
            self._found.setdefault(key, []).append(pod)
        for found in self._found.values():
            found.sort(key=_age)

    def of(self, role: RoleId, attempt: int) -> list[Mapping[str, Any]]:
        return self._found.get((role.kind.value, str(role.index), str(attempt)), [])


def _age(pod: Mapping[str, Any]) -> tuple[str, bool, str]:
    meta = pod["metadata"]
    return (meta.get("creationTimestamp") or "", pod_end(pod) is None, meta["name"])


def replica_pods(
    pods: Sequence[Mapping[str, Any]], role: RoleId, attempt: int
) -> list[Mapping[str, Any]]:
    """The pods of one replica in one restart attempt, oldest first."""
    return PodIndex(pods).of(role, attempt)


def role_view(
    spec: JobSpec,
    role: RoleId,
    jobset: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] | PodIndex,
    workload: Mapping[str, Any] | None = None,
    position: QueuePosition | None = None,
) -> RoleView:
    """What `role` is doing in this JobSet (None: the JobSet is gone)."""
    name = role.name
    index = pods if isinstance(pods, PodIndex) else PodIndex(pods)
    if jobset is None:
        return _view(
            name,
            RoleState.FAILED,
            "its JobSet is gone: deleted (stopped, torn down, or past ttlSecondsAfterFinished)",
        )
    status = jobset.get("status") or {}
    attempt = int(status.get("restarts") or 0)
    history = index.of(role, attempt)
    current = history[-1] if history else None
    pod_name = current["metadata"]["name"] if current else None
    if condition(jobset, "Completed"):
        end = pod_end(current) if current else None
        if end is not None and end.ending is Ending.SUCCEEDED:
            return _view(name, RoleState.SUCCEEDED, "", pod_name, end)
        return _view(
            name, RoleState.SUCCEEDED, "ended with the job: the JobSet completed", pod_name
        )
    if condition(jobset, "Failed"):
        return _failed_set(spec, role, jobset, index, pod_name)
    if suspended(jobset):
        return _view(name, RoleState.PENDING, why_queued(jobset, workload, position))
    if current is None:
        return _view(name, RoleState.PENDING, _no_pod_yet(spec, jobset))
    end = pod_end(current)
    if end is None:
        return _alive(spec, role, jobset, current, history)
    if end.ending is Ending.SUCCEEDED:
        return _view(name, RoleState.SUCCEEDED, "", pod_name, end)
    # The pod ended; what follows is the cluster's to do. Until the JobSet says it failed the
    # role is waiting for it, in the compiled policy's words.
    verdict = _verdict(spec, role, end, history, status)
    if verdict.action is Action.FAIL_JOB:
        return _view(name, RoleState.PENDING, f"ending the job: {verdict.reason}", pod_name)
    return _view(name, RoleState.PENDING, f"restarting: {verdict.reason}", pod_name)


def role_views(
    spec: JobSpec,
    jobset: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    workload: Mapping[str, Any] | None = None,
    position: QueuePosition | None = None,
) -> dict[str, RoleView]:
    """Every role's view, from one read of the JobSet, its pods, its Workload and (while it
    waits for quota) its place in the queue."""
    index = PodIndex(pods)
    return {
        f"{kind.value}-{i}": role_view(
            spec, RoleId(kind=kind, index=i), jobset, index, workload, position
        )
        for kind, i in spec.roles()
    }


def _view(
    name: str, state: RoleState, detail: str, pod: str | None = None, end: RoleEnd | None = None
) -> RoleView:
    """A role's view; `end`: how its own pod ended, when it did."""
    status = RoleStatus(
        name=name,
        state=state,
        detail=detail,
        exit_code=end.exit_code if end else None,
        ending=end.ending if end and state is RoleState.FAILED else None,
    )
    return RoleView(status=status, pod=pod)


def _counted(spec: JobSpec, role: RoleId, earlier: Sequence[Mapping[str, Any]]) -> int:
    """Counted restarts of a role-scope replica so far: its earlier pods that ended in a crash
    or OOM (a preempted pod is replaced for free, as the Job's pod failure policy says)."""
    if restart_scope(role.kind, spec.cluster.uses_parameter_servers) is not Scope.ROLE:
        return 0
    ends = [pod_end(pod) for pod in earlier]
    return sum(1 for end in ends if end and end.ending in (Ending.CRASHED, Ending.OOM_KILLED))


def _verdict(
    spec: JobSpec,
    role: RoleId,
    end: RoleEnd,
    history: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any],
) -> Verdict:
    return decide(
        role,
        end,
        uses_parameter_servers=spec.cluster.uses_parameter_servers,
        policy=spec.restart_policy,
        role_restarts=_counted(spec, role, history[:-1]),
        job_restarts=int(status.get("restartsCountTowardsMax") or 0),
    )


def _alive(
    spec: JobSpec,
    role: RoleId,
    jobset: Mapping[str, Any],
    pod: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
) -> RoleView:
    name, pod_name = role.name, pod["metadata"]["name"]
    again = _again(spec, role, jobset, history)
    state = read_pod(pod)
    if state.phase is Phase.RUNNING:
        return _view(name, RoleState.RUNNING, again, pod_name)
    if state.end is not None:  # its image name cannot work: no retry will help
        return _view(name, RoleState.FAILED, state.detail, pod_name, state.end)
    why_pending = f"pod {state.detail}"
    return _view(
        name, RoleState.PENDING, f"{why_pending} ({again})" if again else why_pending, pod_name
    )


def _again(
    spec: JobSpec, role: RoleId, jobset: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> str:
    """Which run of the role this is, when not its first: `restart 1 of worker-0 alone, 1 of
    3 counted, after ...` or `job restart 2, 1 of 2 counted`."""
    parts = []
    earlier = history[:-1]
    if earlier:
        last = pod_end(earlier[-1])
        counted = _counted(spec, role, earlier)
        budget = spec.restart_policy.max_role_restarts
        how = f", after {last.describe()}" if last else ""
        parts.append(f"restart {len(earlier)} of {role} alone, {counted} of {budget} counted{how}")
    status = jobset.get("status") or {}
    restarts = int(status.get("restarts") or 0)
    if restarts:
        counted = int(status.get("restartsCountTowardsMax") or 0)
        budget = spec.restart_policy.max_job_restarts
        why = _failed_job_role(jobset, condition(jobset, "RestartingJobSet"))
        parts.append(
            f"job restart {restarts}, {counted} of {budget} counted"
            + (f", after {why}" if why else "")
        )
    return "; ".join(parts)


def _no_pod_yet(spec: JobSpec, jobset: Mapping[str, Any]) -> str:
    restarting = condition(jobset, "RestartingJobSet")
    status = jobset.get("status") or {}
    if restarting or int(status.get("restarts") or 0):
        counted = int(status.get("restartsCountTowardsMax") or 0)
        budget = spec.restart_policy.max_job_restarts
        why = _failed_job_role(jobset, restarting) or "a role failed"
        return (
            f"restarting every role from the last checkpoint (job restart "
            f"{status.get('restarts') or 1}, {counted} of {budget} counted): {why}"
        )
    return "admitted; waiting for its pod to be created"


def _failed_job_role(jobset: Mapping[str, Any], cond: Mapping[str, Any] | None) -> str:
    """`chief-0 failed`, from a JobSet condition's `(first failed job: <jobset>-chief-0)`."""
    found = _FIRST_FAILED.search(str((cond or {}).get("message") or ""))
    if not found:
        return ""
    prefix = f"{jobset['metadata']['name']}-"
    return f"{found.group(1).removeprefix(prefix)} failed"


def _failed_set(
    spec: JobSpec,
    role: RoleId,
    jobset: Mapping[str, Any],
    index: PodIndex,
    pod_name: str | None,
) -> RoleView:
    """The JobSet failed: say which role made it fail and how, in the policy's words."""
    failed = condition(jobset, "Failed") or {}
    status = jobset.get("status") or {}
    culprit = _FIRST_FAILED.search(str(failed.get("message") or ""))
    reason = why(failed) or "the JobSet failed"
    own: RoleEnd | None = None
    if culprit:
        prefix = f"{jobset['metadata']['name']}-"
        try:
            who = RoleId.parse(culprit.group(1).removeprefix(prefix))
        except ValueError:
            who = None
        history = index.of(who, int(status.get("restarts") or 0)) if who else []
        end = pod_end(history[-1]) if history else None
        if who is not None and end is not None and end.ending is not Ending.SUCCEEDED:
            reason = _verdict(spec, who, end, history, status).reason
            if who == role:
                own = end
        elif who is not None:
            reason = f"{who} failed ({reason})"
        if who is not None and who != role:
            reason = f"the job failed: {reason}"
    return _view(role.name, RoleState.FAILED, reason, pod_name, own)


def why_queued(
    jobset: Mapping[str, Any],
    workload: Mapping[str, Any] | None,
    position: QueuePosition | None = None,
) -> str:
    """Why a suspended JobSet waits: Kueue's queue, its place there (`position`, from Kueue's
    visibility API) and reason, or its admission checks."""
    queue = jobset["metadata"].get("labels", {}).get(QUEUE_NAME)
    if not queue:
        return "suspended (spec.suspend is true); resume the JobSet to run it"
    where = f"queued in Kueue (queue {queue}" + (f": {position.describe()})" if position else ")")
    if workload is None:
        return f"{where}: waiting for Kueue to create its workload"
    status = workload.get("status") or {}
    evicted = condition(workload, "Evicted")
    if evicted:
        return f"evicted by Kueue ({why(evicted)}); {where} again"
    if condition(workload, "QuotaReserved") and not condition(workload, "Admitted"):
        cluster_queue = (status.get("admission") or {}).get("clusterQueue") or "?"
        waiting = [c for c in status.get("admissionChecks") or () if c.get("state") != "Ready"]
        checks = "; ".join(
            f"{c.get('name')} {c.get('state', 'Pending')}"
            + (f": {c['message']}" if c.get("message") else "")
            for c in waiting
        )
        return f"admitted to quota in cluster queue {cluster_queue}, waiting for nodes" + (
            f" (admission checks: {checks})" if checks else ""
        )
    if condition(workload, "Admitted"):
        return f"admitted by Kueue (queue {queue}); starting"
    quota = any_condition(workload, "QuotaReserved") or {}
    return f"{where}: {why(quota) or 'waiting for quota'}"


def admission(
    jobset: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None = None,
    position: QueuePosition | None = None,
) -> Admission | None:
    """The launch's wait in its Kueue queue, from the JobSet's `Suspended` condition (Kueue
    admits a JobSet by resuming it): queued since the JobSet was last suspended (else since it
    was created), admitted when it was last resumed; None without a queue."""
    if jobset is None:
        return None
    meta = jobset["metadata"]
    labels = meta.get("labels") or {}
    queue = labels.get(QUEUE_NAME)
    if not queue:
        return None
    created = timestamp(meta.get("creationTimestamp")) or 0.0
    flipped = any_condition(jobset, "Suspended") or {}
    at = timestamp(flipped.get("lastTransitionTime"))
    if suspended(jobset):
        place = position.model_copy(update={"waited_secs": None}) if position else None
        return Admission(
            launch_id=labels.get(LAUNCH, ""),
            queue=queue,
            queued_at=at if flipped.get("status") == "True" and at else created,
            detail=why_queued(jobset, workload, place),
        )
    return Admission(
        launch_id=labels.get(LAUNCH, ""),
        queue=queue,
        queued_at=created,
        admitted_at=at if flipped.get("status") == "False" and at else created,
    )
