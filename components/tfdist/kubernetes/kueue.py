"""Kueue settings of a JobSet launch: plain data, light enough for DAG files to import.

Kueue admits a whole gang at once when quota (and, with a ProvisioningRequest admission check
such as GKE's flex-start, the capacity) is there (Kueue docs: tasks/run/jobsets.md,
concepts/admission_check/provisioning_request.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tfdist.kubernetes.placement import ObjectName

QUEUE_NAME = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"
WORKLOAD_JOB_UID = "kueue.x-k8s.io/job-uid"  # on a Workload: the uid of the job it admits
PROVREQ_PREFIX = "provreq.kueue.x-k8s.io/"
# Kueue's visibility API (Beta, on by default since Kueue 0.15): a LocalQueue's pending
# workloads with their positions (site/content/en/docs/tasks/manage/monitor_pending_workloads).
VISIBILITY = "/apis/visibility.kueue.x-k8s.io/v1beta2"


def _provisioning_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not key.startswith(PROVREQ_PREFIX) or len(key) == len(PROVREQ_PREFIX):
            raise ValueError(
                f"{key!r}: only {PROVREQ_PREFIX}<parameter> annotations pass to the "
                f"ProvisioningRequest; write it as {PROVREQ_PREFIX}{key.rsplit('/', 1)[-1]}"
            )
    return value


class Kueue(BaseModel):
    """Admission of the whole gang by Kueue: all pods at once, when quota (and capacity) is there.

    :param queue_name: the LocalQueue in the JobSet's namespace; None: no Kueue.
    :param priority_class: a Kueue WorkloadPriorityClass.
    :param provisioning: `provreq.kueue.x-k8s.io/*` annotations, passed on to the
        ProvisioningRequest (GKE flex-start / Dynamic Workload Scheduler), e.g.
        `provreq.kueue.x-k8s.io/maxRunDurationSeconds: "14400"`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_name: ObjectName | None = None
    priority_class: ObjectName | None = None
    provisioning: Annotated[dict[str, str], AfterValidator(_provisioning_keys)] = Field(
        default_factory=dict
    )

    def labels(self) -> dict[str, str]:
        labels = {QUEUE_NAME: self.queue_name, PRIORITY_CLASS: self.priority_class}
        return {key: value for key, value in labels.items() if value}


class QueuePosition(BaseModel):
    """Where a pending Workload stands (Kueue counts from 0): in its LocalQueue, of how many
    pending there, and in its ClusterQueue; how long it has waited (None: unknown)."""

    model_config = ConfigDict(frozen=True)

    in_local_queue: int
    local_queue_size: int
    in_cluster_queue: int
    waited_secs: float | None = None

    @classmethod
    def find(
        cls, pending: list[dict[str, Any]], workload: str, waited_secs: float | None
    ) -> QueuePosition | None:
        """The position of `workload` among a LocalQueue's `pending` workloads (the visibility
        API's `PendingWorkload` items); None when it is not among them."""
        for item in pending:
            if (item.get("metadata") or {}).get("name") == workload:
                return cls(
                    in_local_queue=int(item.get("positionInLocalQueue") or 0),
                    local_queue_size=len(pending),
                    in_cluster_queue=int(item.get("positionInClusterQueue") or 0),
                    waited_secs=waited_secs,
                )
        return None

    def describe(self) -> str:
        """`2nd of 5 in it, 7th in its cluster queue; waiting 12 min`."""
        local = f"{ordinal(self.in_local_queue + 1)} of {self.local_queue_size} in it"
        text = f"{local}, {ordinal(self.in_cluster_queue + 1)} in its cluster queue"
        if self.waited_secs is not None:
            text += f"; waiting {duration(self.waited_secs)}"
        return text


def ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def duration(secs: float) -> str:
    """`under a minute`, `12 min`, `3 h 5 min`: whole minutes, so that a watch that logs its
    role's state when it changes logs the wait once a minute, not every poll."""
    secs = max(int(secs), 0)
    if secs < 60:
        return "under a minute"
    hours, minutes = divmod(secs // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
