"""A train-and-evaluate job as one JobSet (`jobset.x-k8s.io/v1alpha2`), admitted by Kueue.

One replicated job per role kind (chief, worker, ps, evaluator) with one child Job per replica,
so that one replica can be restarted alone. With `network.enableDNSHostnames` the JobSet
controller creates a headless Service named after the JobSet, and the pod of replica `i` of
role `r` has the hostname `<jobset>-<r>-<i>-0` in it (JobSet docs, concepts: "DNS hostnames
for Pods"); `TF_CONFIG` lists exactly these names (`jobset_addresses`).

A replicated job has one pod template for all its replicas, so `TF_CONFIG`'s task index comes
from the pod itself: `TASK_INDEX` is read from the controller's label
`jobset.sigs.k8s.io/job-index` through the downward API and defined before `TF_CONFIG`, whose
value holds `"index": $(TASK_INDEX)` (Kubernetes expands `$(VAR)` for variables defined earlier
in the list). A `command:` trainer that reads only `TF_CONFIG` gets the same value as on any
other backend. The restart policy is compiled from the core lifecycle (`jobset_policy`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tfdist.kubernetes import jobset_policy
from tfdist.kubernetes.kueue import Kueue
from tfdist.kubernetes.manifests import (
    CONTAINER,
    PORT,
    Target,
    build_container,
    build_pod_spec,
    dns_suffix,
)
from tfdist.kubernetes.names import (
    ROLE,
    ROLES_ANNOTATION,
    SCOPE_ANNOTATION,
    SPEC_ANNOTATION,
    RunRef,
    digest,
    launch_labels,
)
from tfdist.plan import JobPlan, RolePlan, plan
from tfdist.spec import JobSpec, Role

API_VERSION = "jobset.x-k8s.io/v1alpha2"
KIND = "JobSet"
PLURAL = "jobsets"
# Labels the JobSet controller puts on child Jobs and pods (api/jobset/v1alpha2, pkg/constants).
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX = "jobset.sigs.k8s.io/job-index"
RESTART_ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"

TASK_INDEX = "TASK_INDEX"
# Room for `-<role>-<index>-0-xxxxx` in a 63-character pod name: up to 9999 replicas of the
# longest role name (`evaluator`) and of workers (the JobSet webhook checks this).
MAX_JOBSET_NAME = 40
MAX_REPLICAS = 10_000
_INDEX_SLOT = "__tfdist_task_index__"


class JobSetOptions(BaseModel):
    """What a JobSet launch adds to the pods' `Target`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kueue: Kueue = Field(default_factory=Kueue)
    # The controller deletes a finished JobSet (and its pods, logs with them) after this long,
    # also when no teardown ever runs.
    ttl_secs_after_finished: int = Field(default=86400, ge=0)


def jobset_name(job: str, ref: RunRef) -> str:
    """`<job>-<hash of run, step and launch>`, at most 40 characters, starting with a letter
    (it is also the headless Service's name: a DNS-1035 label)."""
    base = job if job[:1].isalpha() else f"tf-{job}"
    suffix = f"-{digest(f'{ref.scope}/{ref.launch}/{job}')}"
    return f"{base[: MAX_JOBSET_NAME - len(suffix)].rstrip('-')}{suffix}"


def hostname(jobset: str, role: str, index: int) -> str:
    """The pod hostname of replica `index` of `role`: `<jobset>-<role>-<index>-0`."""
    return f"{jobset}-{role}-{index}-0"


def child_job_name(jobset: str, role: str, index: int) -> str:
    return f"{jobset}-{role}-{index}"


def jobset_addresses(
    spec: JobSpec, jobset: str, namespace: str, domain: str | None = None
) -> dict[str, list[str]]:
    """The DNS name and port of every chief, worker and ps replica's pod, for `plan`."""
    suffix = dns_suffix(namespace, domain)
    return {
        role.value: [
            f"{hostname(jobset, role.value, i)}.{jobset}.{suffix}:{PORT}"
            for i in range(spec.cluster.count(role))
        ]
        for role in (Role.CHIEF, Role.WORKER, Role.PS)
    }


def indexed_tf_config(job: JobPlan, role: Role) -> str:
    """The `TF_CONFIG` of every replica of `role`, with `$(TASK_INDEX)` for the task index."""
    config = json.loads(job.role(f"{role.value}-0").env["TF_CONFIG"])
    config["task"]["index"] = _INDEX_SLOT
    return json.dumps(config, sort_keys=True).replace(f'"{_INDEX_SLOT}"', f"$({TASK_INDEX})")


def expand(value: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` references replaced as Kubernetes does for variables defined earlier (`$$`
    escapes `$`; an undefined reference stays as written)."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2 : end]
            out.append(env.get(name, value[i : end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _replicated_job(
    job: JobPlan, role: Role, ref: RunRef, target: Target, labels: Mapping[str, str]
) -> dict[str, Any]:
    spec = job.spec
    first: RolePlan = job.role(f"{role.value}-0")
    placed = target.placement.for_role(role)
    env = {
        "PYTHONUNBUFFERED": "1",
        **first.env,
        "TF_CONFIG": indexed_tf_config(job, role),
        "TFDIST_LAUNCH_ID": ref.launch,
    }
    if TASK_INDEX in env or TASK_INDEX in (placed.secret_env or {}):
        raise ValueError(
            f"{TASK_INDEX} is set by the JobSet backend for each replica; rename it in "
            "trainer.env or the placement's secret_env"
        )
    serves = first.address is not None
    container = build_container(first.name, first.command, env, placed, target.image, serves=serves)
    index_from_label = {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_INDEX}']"}}
    container["env"].insert(0, {"name": TASK_INDEX, "valueFrom": index_from_label})
    role_scope = jobset_policy.scope(spec, role)
    return {
        "name": role.value,
        "replicas": spec.cluster.count(role),
        "template": {
            "metadata": {"labels": {**labels, ROLE: role.value}},
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "completionMode": "Indexed",
                "backoffLimit": jobset_policy.backoff_limit(spec, role),
                "podFailurePolicy": jobset_policy.pod_failure_policy(role_scope, CONTAINER),
                "template": {
                    "metadata": {
                        "labels": {**labels, ROLE: role.value},
                        **(
                            {"annotations": placed.topology.annotations()}
                            if placed.topology
                            else {}
                        ),
                    },
                    "spec": {
                        **build_pod_spec(placed, container),
                        # SIGTERM, then SIGKILL: the chief saves a checkpoint in between.
                        "terminationGracePeriodSeconds": spec.restart_policy.grace_period_secs,
                    },
                },
            },
        },
    }


def build_jobset(
    job: JobPlan, ref: RunRef, target: Target, options: JobSetOptions | None = None
) -> dict[str, Any]:
    """The JobSet of a launch. The plan must use this JobSet's pod hostnames
    (`jobset_addresses`)."""
    options = options or JobSetOptions()
    spec = job.spec
    name = jobset_name(spec.name, ref)
    expected = jobset_addresses(spec, name, target.namespace, target.cluster_domain)
    if job.cluster != {role: names for role, names in expected.items() if names}:
        raise ValueError(
            f"the plan's addresses are not the pod hostnames of JobSet {name}; plan with "
            "jobset_addresses(spec, jobset, namespace, domain)"
        )
    placed = {
        role: target.placement.for_role(role) for role in jobset_policy.replicated_roles(spec)
    }
    topology = [role.value for role, p in placed.items() if p.topology is not None]
    if topology and not options.kueue.queue_name:
        raise ValueError(
            f"placement: the topology of {', '.join(topology)} is honoured by Kueue's "
            "topology-aware scheduling only; name a queue (kueue.queue_name, --queue) or "
            "remove `topology`"
        )
    labels = launch_labels(spec.name, ref)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {**labels, **options.kueue.labels()},
            "annotations": {
                ROLES_ANNOTATION: ",".join(job.role_names),
                SCOPE_ANNOTATION: ref.scope,
                SPEC_ANNOTATION: spec.model_dump_json(),
                **options.kueue.provisioning,
            },
        },
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "replicatedJobs": [
                _replicated_job(job, role, ref, target, labels)
                for role in jobset_policy.replicated_roles(spec)
            ],
            "successPolicy": jobset_policy.success_policy(spec),
            "failurePolicy": jobset_policy.failure_policy(spec),
            "ttlSecondsAfterFinished": options.ttl_secs_after_finished,
        },
    }


def plan_jobset(
    spec: JobSpec,
    target: Target,
    options: JobSetOptions | None = None,
    ref: RunRef | None = None,
    python: str = "python",
) -> dict[str, Any]:
    """Plan `spec` with the JobSet's pod hostnames and build the JobSet, as a launch would."""
    ref = ref or RunRef()
    name = jobset_name(spec.name, ref)
    addresses = jobset_addresses(spec, name, target.namespace, target.cluster_domain)
    return build_jobset(plan(spec, addresses, python=python), ref, target, options)


def local_queue(name: str, namespace: str, cluster_queue: str) -> dict[str, Any]:
    """The Kueue LocalQueue a JobSet names, pointing at a ClusterQueue."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue},
    }


def replica_env(jobset: Mapping[str, Any], role: str, index: int) -> dict[str, str]:
    """The environment the pod of replica `index` of `role` sees, `$(VAR)` expanded: what a
    trainer reads (for tests and `tfdist plan`)."""
    for replicated in jobset["spec"]["replicatedJobs"]:
        if replicated["name"] == role:
            pod = replicated["template"]["spec"]["template"]["spec"]
            seen: dict[str, str] = {}
            for var in pod["containers"][0]["env"]:
                if "value" in var:
                    seen[var["name"]] = expand(var["value"], seen)
                elif var["name"] == TASK_INDEX:
                    seen[var["name"]] = str(index)
            return seen
    raise KeyError(f"no replicated job {role!r}")
