"""Kueue settings of a JobSet launch: plain data, light enough for DAG files to import.

Kueue admits a whole gang at once when quota (and, with a ProvisioningRequest admission check
such as GKE's flex-start, the capacity) is there (Kueue docs: tasks/run/jobsets.md,
concepts/admission_check/provisioning_request.md).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tfdist.kubernetes.placement import ObjectName

QUEUE_NAME = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"
WORKLOAD_JOB_UID = "kueue.x-k8s.io/job-uid"  # on a Workload: the uid of the job it admits
PROVREQ_PREFIX = "provreq.kueue.x-k8s.io/"


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
