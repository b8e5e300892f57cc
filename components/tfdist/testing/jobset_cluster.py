"""An in-memory JobSet controller, Job controller and Kueue, for tests and demos.

`FakeJobSetCluster` is a `FakeKubeApi` that also stores JobSets and Kueue Workloads, and that
after every request does what the controllers of a real cluster would do, as far as tfdist
relies on it. Tests play the kubelet and the cloud (`start`, `exit`, `oom`, `preempt` a pod)
and Kueue's scheduler (`reserve_quota`, `admit`, `evict`). Each behaviour's docstring names
the documentation it follows:

- JobSet v0.12: site/content/en/docs (concepts; tasks/failure_policy.md) and the API reference
  of `api/jobset/v1alpha2/jobset_types.go`;
- Kubernetes Jobs: "Jobs" concept page, sections "Pod failure policy", "Pod backoff failure
  policy", "Suspending a Job", "Completion mode" (Indexed);
- Kueue v0.19: tasks/run/jobsets.md, concepts/workload.md, concepts/admission_check.

Not modelled: scheduling and nodes (pods stay Pending until a test starts them), in-place
restarts, `dependsOn`, `RestartJob` (an alpha feature gate, off by default), volume claims.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tfdist.kubernetes.api import JOBSETS, WORKLOADS, Resource
from tfdist.kubernetes.jobset import (
    JOB_INDEX,
    JOBSET_NAME,
    REPLICATED_JOB,
    RESTART_ATTEMPT,
    child_job_name,
    hostname,
)
from tfdist.kubernetes.kueue import QUEUE_NAME, WORKLOAD_JOB_UID
from tfdist.kubernetes.names import digest
from tfdist.kubernetes.placement import PREFERRED_TOPOLOGY, REQUIRED_TOPOLOGY
from tfdist.testing.kube_api import FakeKubeApi, Key

JOBSET_UID = "jobset.sigs.k8s.io/jobset-uid"
JOB_UID = WORKLOAD_JOB_UID
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_NAME = "batch.kubernetes.io/job-name"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as Kubernetes' generated name suffixes
MAX_PASSES = 20  # a cluster settles in a handful; more means controllers undoing each other


class Unsettled(RuntimeError):
    """The fake controllers did not settle."""


class FakeJobSetCluster(FakeKubeApi):
    """Implements `KubeApi` in memory with the JobSet, Job and Kueue controllers running."""

    def __init__(self, clock: Callable[[], float] = time.time, linger: int = 0):
        super().__init__(clock, linger)
        self.jobs: dict[Key, dict[str, Any]] = {}  # batch/v1 Jobs, by (namespace, name)
        self._pod_ids = itertools.count(1)
        self._failures = itertools.count(1)  # the order in which Jobs failed
        self._busy = False
        self._settled = False  # nothing changed since the controllers last settled
        self.paused = False  # controllers lagging behind: see `pause`
        self.cluster_queues: dict[str, str] = {}  # LocalQueue -> ClusterQueue (default one)

    # -- the API, with the controllers reacting ----------------------------------------------
    def create_object(
        self, resource: Resource, namespace: str, manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = super().create_object(resource, namespace, manifest)
        if resource == JOBSETS:
            stored = self.objects[(JOBSETS.plural, namespace, obj["metadata"]["name"])]
            _default(stored)
            stored["status"] = {"restarts": 0, "restartsCountTowardsMax": 0}
            self._queue(stored)
            self.reconcile()
            obj = copy.deepcopy(stored)
        return obj

    def delete_object(
        self, resource: Resource, namespace: str, name: str, *, foreground: bool = False
    ) -> None:
        """Foreground deletion keeps the JobSet (with a `deletionTimestamp`) until its Jobs
        and pods are gone; background deletion removes it at once and its dependents after
        (Kubernetes docs, "Garbage collection: cascading deletion")."""
        key = (resource.plural, namespace, name)
        if resource != JOBSETS or key not in self.objects:
            super().delete_object(resource, namespace, name, foreground=foreground)
            return
        self.calls.append((f"delete_{resource.plural}", name))
        jobset = self.objects[key]
        jobset["metadata"].setdefault("deletionTimestamp", self._now())
        if not foreground:
            self._forget(jobset)
        self.reconcile()

    def _tick(self) -> None:
        super()._tick()
        waiting = any(
            obj["spec"].get("ttlSecondsAfterFinished") is not None
            and (_true(obj, "Completed") or _true(obj, "Failed"))
            for (plural, _, _), obj in self.objects.items()
            if plural == JOBSETS.plural
        )
        if not self._settled or self._terminating or waiting:
            self.reconcile()

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self._settled = False
        super().create_pod(namespace, manifest)

    def delete_pod(self, namespace: str, name: str) -> None:
        self._settled = False
        super().delete_pod(namespace, name)

    def pod(self, name: str) -> dict[str, Any]:
        self._settled = False  # the caller may change it, as a kubelet does
        return super().pod(name)

    def _remove(self, key: Key) -> None:
        self._settled = False
        super()._remove(key)

    # -- the kubelet and the cloud (tests call these) -----------------------------------------
    def exit(self, name: str, code: int, reason: str | None = None) -> None:
        super().exit(name, code, reason)
        self.reconcile()

    def preempt_by_scheduler(self, name: str, code: int = 137) -> None:
        super().preempt_by_scheduler(name, code)
        self.reconcile()

    def evict_pod(self, name: str, by_api: bool = True) -> None:
        super().evict_pod(name, by_api)
        self.reconcile()

    def preempt(
        self,
        name: str,
        reason: str = "Terminated",
        message: str = "Pod was terminated in response to imminent node shutdown.",
        code: int = 143,
    ) -> None:
        super().preempt(name, reason, message, code)
        self.reconcile()

    # -- Kueue's visibility API ----------------------------------------------------------------
    def pending_workloads(self, namespace: str, local_queue: str) -> list[dict[str, Any]]:
        """The LocalQueue's pending Workloads (no quota reserved), oldest first, each with its
        0-based position in the LocalQueue and in the ClusterQueue behind it
        (`cluster_queues`, default `cluster-queue`), as the visibility API lists them."""
        self._tick()
        pending = [
            obj
            for (plural, _, _), obj in self.objects.items()
            if plural == WORKLOADS.plural and not _true(obj, "QuotaReserved")
        ]
        cluster = self.cluster_queues.get(local_queue, "cluster-queue")
        same = [
            w
            for w in pending
            if self.cluster_queues.get(w["spec"]["queueName"], "cluster-queue") == cluster
        ]
        mine = [
            w
            for w in same
            if w["spec"]["queueName"] == local_queue and w["metadata"]["namespace"] == namespace
        ]
        return [
            {
                "metadata": {"name": w["metadata"]["name"], "namespace": namespace},
                "localQueueName": local_queue,
                "positionInLocalQueue": index,
                "positionInClusterQueue": same.index(w),
                "priority": 0,
            }
            for index, w in enumerate(mine)
        ]

    # -- Kueue's scheduler (tests call these) -------------------------------------------------
    def workload_of(self, jobset: str) -> dict[str, Any]:
        js = self._jobset(jobset)  # (the caller may change them)
        for (plural, _, _), obj in self.objects.items():
            if plural == WORKLOADS.plural and obj["metadata"]["labels"].get(JOB_UID) == js[
                "metadata"
            ].get("uid"):
                return obj
        raise KeyError(f"no workload of JobSet {jobset!r}")

    def pending(self, jobset: str, message: str, reason: str = "Pending") -> None:
        """Kueue could not reserve quota yet (concepts/workload.md: QuotaReserved False)."""
        _set(self.workload_of(jobset), "QuotaReserved", "False", reason, message, self._now())

    def reserve_quota(
        self, jobset: str, cluster_queue: str, checks: Mapping[str, str] | None = None
    ) -> None:
        """Quota reserved in `cluster_queue`; admission checks (e.g. a ProvisioningRequest on
        GKE) still `Pending` with the given messages (concepts/admission_check)."""
        workload = self.workload_of(jobset)
        now = self._now()
        _set(
            workload,
            "QuotaReserved",
            "True",
            "QuotaReserved",
            f"Quota reserved in {cluster_queue}",
            now,
        )
        workload["status"]["admission"] = {"clusterQueue": cluster_queue}
        workload["status"]["admissionChecks"] = [
            {"name": name, "state": "Pending", "message": message, "lastTransitionTime": now}
            for name, message in (checks or {}).items()
        ]

    def admit(self, jobset: str, cluster_queue: str = "cluster-queue") -> None:
        """Admit the whole workload at once: Kueue un-suspends the JobSet, whose controller
        then un-suspends its Jobs (Kueue tasks/run/jobsets.md; JobSet `spec.suspend`)."""
        workload = self.workload_of(jobset)
        if not _true(workload, "QuotaReserved"):
            self.reserve_quota(jobset, cluster_queue)
        now = self._now()
        for check in workload["status"].get("admissionChecks", []):
            check.update(state="Ready", lastTransitionTime=now)
        _set(workload, "Admitted", "True", "Admitted", "The workload is admitted", now)
        _set(workload, "Evicted", "False", "Admitted", "", now)
        self._jobset(jobset)["spec"]["suspend"] = False
        self.reconcile()

    def evict(self, jobset: str, reason: str, message: str) -> None:
        """Kueue evicts and requeues the workload (e.g. `PodsReadyTimeout` under
        waitForPodsReady, or preemption): the JobSet is suspended again."""
        workload = self.workload_of(jobset)
        now = self._now()
        _set(workload, "Evicted", "True", reason, message, now)
        _set(workload, "Admitted", "False", "NoReservation", "", now)
        _set(workload, "QuotaReserved", "False", "Pending", "requeued", now)
        self._jobset(jobset)["spec"]["suspend"] = True
        self.reconcile()

    # -- controller latency (tests) ----------------------------------------------------------
    def pause(self) -> None:
        """Hold the controllers back, as between a pod's end and their next reconcile: reads
        see the ended pod before the Job, JobSet and Kueue react to it."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.reconcile()

    # -- looking around (tests) ----------------------------------------------------------------
    def current_pod(self, jobset: str, role: str, index: int) -> str:
        """The newest pod of replica `index` of `role` in the JobSet's current attempt."""
        js = self._jobset(jobset)
        attempt = str(js["status"]["restarts"])
        found = [
            pod
            for pod in self.pods.values()
            if _labels(pod).get(JOBSET_NAME) == jobset
            and _labels(pod).get(REPLICATED_JOB) == role
            and _labels(pod).get(JOB_INDEX) == str(index)
            and _labels(pod).get(RESTART_ATTEMPT) == attempt
        ]
        if not found:
            raise KeyError(f"no pod of {role}-{index} in JobSet {jobset} attempt {attempt}")
        return str(found[-1]["metadata"]["name"])  # the store keeps creation order

    def jobset(self, name: str) -> dict[str, Any]:
        """The stored JobSet (changes show in later reads)."""
        return self._jobset(name)

    # -- the controllers -----------------------------------------------------------------------
    def reconcile(self) -> None:
        """Run the controllers until nothing changes (as a real cluster settles). What they
        create and delete is not recorded in `calls`: those are the client's requests.

        Raises `Unsettled` when they still change things after `MAX_PASSES` passes: a real
        cluster that never settles is a bug (two controllers undoing each other's work), and
        so is a fake that does not."""
        if self._busy or self.paused:
            return
        self._busy = True
        mark = len(self.calls)
        try:
            for _ in range(MAX_PASSES):
                before = repr((self.objects, self.jobs, self.pods))
                self._pass()
                if repr((self.objects, self.jobs, self.pods)) == before:
                    self._settled = True
                    return
            raise Unsettled(
                f"the controllers still change the cluster after {MAX_PASSES} passes; "
                f"JobSets: {[key[2] for key in self.objects if key[0] == JOBSETS.plural]}, "
                f"Jobs: {sorted(name for _, name in self.jobs)}"
            )
        finally:
            del self.calls[mark:]
            self._busy = False

    def _pass(self) -> None:
        """One pass of every controller over every object."""
        for key in [k for k in self.objects if k[0] == JOBSETS.plural]:
            if key in self.objects:
                self._reconcile_jobset(self.objects[key])
        for job_key in list(self.jobs):
            if job_key in self.jobs:
                self._reconcile_job(self.jobs[job_key])

    def _reconcile_jobset(self, js: dict[str, Any]) -> None:
        """One pass of the JobSet controller, in the order of its reconcile loop
        (pkg/controllers/jobset_controller.go)."""
        meta, spec, status = js["metadata"], js["spec"], js["status"]
        if meta.get("deletionTimestamp"):
            self._delete_children(js)
            return
        owned = [job for job in self.jobs.values() if _labels(job).get(JOBSET_UID) == meta["uid"]]
        attempt = status["restarts"]
        previous = [job for job in owned if int(_labels(job)[RESTART_ATTEMPT]) < attempt]
        current = [job for job in owned if job not in previous]
        failed = [job for job in current if job_finished(job) == (True, "Failed")]
        succeeded = [job for job in current if job_finished(job) == (True, "Complete")]
        active = [job for job in current if job not in failed and job not in succeeded]
        if _true(js, "Completed") or _true(js, "Failed"):
            self._finished(js, active)
            return
        for job in previous:  # Jobs of an earlier attempt: deleted, foreground
            self._delete_job(job)
        if failed:
            self._failure_policy(js, failed)
            return
        if succeeded and self._success_policy(js, succeeded):
            return
        if spec.get("failurePolicy", {}).get("restartStrategy") == "BlockingRecreate" and previous:
            return  # BlockingRecreate: no new Job until every old one is gone
        names = {job["metadata"]["name"] for job in owned}
        for rjob in spec["replicatedJobs"]:
            for index in range(rjob["replicas"]):
                name = child_job_name(meta["name"], rjob["name"], index)
                if name not in names:
                    self._create_job(js, rjob, index)
        paused = bool(spec.get("suspend"))
        for job in active:
            job["spec"]["suspend"] = paused
        if not paused and _true(js, "RestartingJobSet") and self._all_ready(current, spec):
            _set(js, "RestartingJobSet", "False", "JobsReady", "all jobs are ready", self._now())
        message = "jobset is suspended" if paused else "jobset is resumed"
        reason = "SuspendedJobs" if paused else "ResumeJobs"
        if _true(js, "Suspended") != paused:
            _set(js, "Suspended", "True" if paused else "False", reason, message, self._now())

    def _all_ready(self, jobs: list[dict[str, Any]], spec: Mapping[str, Any]) -> bool:
        """Every Job of the attempt exists and its pod runs: the controller then sets
        RestartingJobSet back to False (reason JobsReady)."""
        wanted = sum(int(rjob["replicas"]) for rjob in spec["replicatedJobs"])
        running = [
            job
            for job in jobs
            if any(p["status"].get("phase") == "Running" for p in self._pods_of(job))
        ]
        return len(jobs) == wanted and len(running) == wanted

    def _finished(self, js: dict[str, Any], active: list[dict[str, Any]]) -> None:
        """A finished JobSet deletes its child Jobs still running (concepts, "Success
        Policy"; jobset_controller.go: jobSetFinished -> deleteJobs(active)); after
        `ttlSecondsAfterFinished` the JobSet itself is deleted (ttl_after_finished.go)."""
        for job in active:
            self._delete_job(job)
        ttl = js["spec"].get("ttlSecondsAfterFinished")
        ended = next(
            (c for c in js["status"].get("conditions", []) if c["type"] in ("Completed", "Failed")),
            None,
        )
        if (
            ttl is not None
            and ended
            and self.clock() >= _seconds(ended["lastTransitionTime"]) + ttl
        ):
            js["metadata"]["deletionTimestamp"] = self._now()
            self._forget(js)

    def _failure_policy(self, js: dict[str, Any], failed: list[dict[str, Any]]) -> None:
        """tasks/failure_policy.md: "the rules are evaluated in order, and the first matching
        rule's action is executed. If no rule matches, the default action is RestartJobSet";
        no failurePolicy: the JobSet fails (executeFailurePolicy)."""
        policy = js["spec"].get("failurePolicy")
        first = find_first_failed_job(failed)
        if first is None:
            return
        if policy is None:
            message = with_first_failed_job(FAILED_JOBS_MESSAGE, first["metadata"]["name"])
            fail_jobset(js, "FailedJobs", message, self._now())
            return
        rule, job = first_failed_rule_and_job(policy.get("rules", []), failed)
        action = rule["action"] if rule else "RestartJobSet"
        apply_failure_policy_rule_action(js, job or first, rule, action, self._now())

    def _success_policy(self, js: dict[str, Any], succeeded: list[dict[str, Any]]) -> bool:
        """successPolicy (API reference; jobset_controller.go): complete the JobSet once as many
        succeeded Jobs match the policy as it expects (`All`: every replica of its targets,
        all replicated jobs when empty; `Any`: one)."""
        if num_jobs_matching_success_policy(js, succeeded) < num_jobs_expected_to_succeed(js):
            return False
        now = self._now()
        _set(js, "Completed", "True", "AllJobsCompleted", "jobset completed successfully", now)
        _set(
            js, "RestartingJobSet", "False", "JobSetCompleted", "jobset completed successfully", now
        )
        js["status"]["terminalState"] = "Completed"
        return True

    def _create_job(self, js: dict[str, Any], rjob: Mapping[str, Any], index: int) -> None:
        """A child Job: the replicated job's template, named `<jobset>-<rjob>-<index>`, with the
        JobSet's labels and annotations on it and on its pod template (`label_and_annotate`),
        the JobSet's subdomain, and `suspend` as the JobSet's."""
        meta = js["metadata"]
        name = child_job_name(meta["name"], rjob["name"], index)
        labels, annotations = label_and_annotate(js, rjob, index)
        template = copy.deepcopy(dict(rjob["template"]))
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "uid": f"uid-{next(self._uids)}",
                "labels": {**template.get("metadata", {}).get("labels", {}), **labels},
                "annotations": {
                    **template.get("metadata", {}).get("annotations", {}),
                    **annotations,
                },
            },
            "spec": template["spec"],
            "status": {"failed": 0, "succeeded": 0},
        }
        pod_template = job["spec"]["template"]
        pod_template.setdefault("metadata", {})
        pod_template["metadata"]["labels"] = {
            **pod_template["metadata"].get("labels", {}),
            **labels,
        }
        pod_template["metadata"]["annotations"] = {
            **pod_template["metadata"].get("annotations", {}),
            **annotations,
        }
        if js["spec"]["network"].get("enableDNSHostnames"):
            pod_template["spec"]["subdomain"] = (
                js["spec"]["network"].get("subdomain") or meta["name"]
            )
        job["spec"]["suspend"] = bool(js["spec"].get("suspend"))
        self.jobs[(meta["namespace"], name)] = job

    def _reconcile_job(self, job: dict[str, Any]) -> None:
        """One pass of the Job controller for a one-pod Indexed Job (completions 1)."""
        meta = job["metadata"]
        pods = self._pods_of(job)
        if meta.get("deletionTimestamp"):
            for pod in pods:
                self.delete_pod(meta["namespace"], pod["metadata"]["name"])
            if not self._pods_of(job):
                self.jobs.pop((meta["namespace"], meta["name"]), None)
            return
        if job_finished(job)[0]:
            return
        self._account(job, pods)
        if _true(job, "Failed"):  # "FailJob: ... all running pods are terminated"
            for pod in self._pods_of(job):
                if pod["status"].get("phase") not in ("Succeeded", "Failed"):
                    self.delete_pod(meta["namespace"], pod["metadata"]["name"])
            return
        live = [
            p for p in self._pods_of(job) if p["status"].get("phase") not in ("Succeeded", "Failed")
        ]
        if job["spec"].get("suspend"):  # "Suspending a Job": its active pods are terminated
            for pod in live:
                self.delete_pod(meta["namespace"], pod["metadata"]["name"])
            return
        if not live and not _true(job, "Complete"):
            self._create_pod(job)

    def _account(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Pods that ended since the last pass: success completes the Job; a failure goes
        through the pod failure policy, rules in order, first match wins ("Pod failure
        policy"): `Ignore` (not counted, a replacement pod), `FailJob` (the Job fails with
        reason PodFailurePolicy), `Count` or no match (counted; more failures than
        `backoffLimit` fail the Job with reason BackoffLimitExceeded, "Pod backoff failure
        policy")."""
        seen = job["status"].setdefault("accounted", [])
        for pod in pods:
            uid = pod["metadata"]["uid"]
            phase = pod["status"].get("phase")
            if uid in seen or phase not in ("Succeeded", "Failed"):
                continue
            seen.append(uid)
            if phase == "Succeeded":
                job["status"]["succeeded"] += 1
                _set(
                    job,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    self._now(),
                )
                return
            message, counts, action = match_pod_failure_policy(
                job["spec"].get("podFailurePolicy"), pod
            )
            if action == "FailIndex":
                raise NotImplementedError("FailIndex (backoffLimitPerIndex) is not modelled")
            if message is not None:
                self._fail_job(job, "PodFailurePolicy", message)
                return
            if not counts:
                continue
            job["status"]["failed"] += 1
            if job["status"]["failed"] > job["spec"].get("backoffLimit", 6):
                self._fail_job(
                    job, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
                return

    def _fail_job(self, job: dict[str, Any], reason: str, message: str) -> None:
        _set(job, "Failed", "True", reason, message, self._now())
        job["status"]["failedOrder"] = next(self._failures)

    def _create_pod(self, job: dict[str, Any]) -> None:
        """A pod of the Job's template named `<job>-0-<5 random characters>`, with hostname
        `<job>-0` ("Completion mode: Indexed"; the JobSet docs' pod hostnames)."""
        meta = job["metadata"]
        template = copy.deepcopy(job["spec"]["template"])
        labels = {
            **template["metadata"].get("labels", {}),
            COMPLETION_INDEX: "0",
            JOB_NAME: meta["name"],
        }
        suffix = _suffix(next(self._pod_ids))
        jobset, rjob, index = labels[JOBSET_NAME], labels[REPLICATED_JOB], int(labels[JOB_INDEX])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-0-{suffix}", "labels": labels},
            "spec": {**template["spec"], "hostname": hostname(jobset, rjob, index)},
        }
        self.create_pod(meta["namespace"], pod)

    def _pods_of(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        return [
            pod
            for (space, _), pod in self.pods.items()
            if space == namespace and _labels(pod).get(JOB_NAME) == name
        ]

    def _delete_job(self, job: dict[str, Any]) -> None:
        job["metadata"].setdefault("deletionTimestamp", self._now())
        self._reconcile_job(job)

    def _delete_children(self, js: dict[str, Any]) -> None:
        uid = js["metadata"]["uid"]
        for job in [job for job in self.jobs.values() if _labels(job).get(JOBSET_UID) == uid]:
            self._delete_job(job)
        left = [job for job in self.jobs.values() if _labels(job).get(JOBSET_UID) == uid]
        if not left:
            self._forget(js)

    def _forget(self, js: Mapping[str, Any]) -> None:
        """Remove the JobSet and the Kueue Workload it owns; its Jobs go next pass."""
        meta = js["metadata"]
        self.objects.pop((JOBSETS.plural, meta["namespace"], meta["name"]), None)
        for key, obj in list(self.objects.items()):
            if key[0] == WORKLOADS.plural and obj["metadata"]["labels"].get(JOB_UID) == meta["uid"]:
                del self.objects[key]
        for job in self.jobs.values():
            if _labels(job).get(JOBSET_UID) == meta["uid"]:
                job["metadata"].setdefault("deletionTimestamp", self._now())

    def _queue(self, js: dict[str, Any]) -> None:
        """Kueue's JobSet integration (tasks/run/jobsets.md): a JobSet labelled with
        `kueue.x-k8s.io/queue-name` is suspended on creation and gets a Workload, one pod set
        per replicated job (`pod_set`), that waits in that LocalQueue until Kueue admits it."""
        meta = js["metadata"]
        queue = meta.get("labels", {}).get(QUEUE_NAME)
        if not queue:
            return
        js["spec"]["suspend"] = True
        name = f"jobset-{meta['name']}-{digest(meta['uid'], 5)}"
        workload: dict[str, Any] = {
            "apiVersion": f"{WORKLOADS.group}/{WORKLOADS.version}",
            "kind": "Workload",
            "metadata": {"name": name, "labels": {JOB_UID: meta["uid"]}},
            "spec": {
                "queueName": queue,
                "podSets": [pod_set(rjob) for rjob in js["spec"]["replicatedJobs"]],
            },
        }
        workload["metadata"].update(
            namespace=meta["namespace"],
            uid=f"uid-{next(self._uids)}",
            creationTimestamp=self._now(),
        )
        self.objects[(WORKLOADS.plural, meta["namespace"], name)] = workload
        workload["status"] = {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "waiting for the scheduler",
                    "lastTransitionTime": self._now(),
                }
            ]
        }

    def _jobset(self, name: str) -> dict[str, Any]:
        self._settled = False  # the caller may change it
        for (plural, _, obj_name), obj in self.objects.items():
            if plural == JOBSETS.plural and obj_name == name:
                return obj
        raise KeyError(f"no JobSet {name!r}")


def _default(js: dict[str, Any]) -> None:
    """The JobSet webhook's defaults (api reference; jobset_webhook.go Default): successPolicy
    `All`, group `default`, `Indexed` completion, pod `restartPolicy: OnFailure`, DNS
    hostnames on."""
    spec = js["spec"]
    spec.setdefault("successPolicy", {"operator": "All"})
    network = spec.setdefault("network", {})
    network.setdefault("enableDNSHostnames", True)
    network.setdefault("publishNotReadyAddresses", True)
    for rjob in spec["replicatedJobs"]:
        rjob.setdefault("groupName", "default")
        job_spec = rjob["template"]["spec"]
        job_spec.setdefault("completionMode", "Indexed")
        job_spec["template"]["spec"].setdefault("restartPolicy", "OnFailure")
    for index, rule in enumerate(spec.get("failurePolicy", {}).get("rules", [])):
        rule.setdefault("name", f"failurePolicyRule{index}")


GROUP_NAME = "jobset.sigs.k8s.io/group-name"
GROUP_REPLICAS = "jobset.sigs.k8s.io/group-replicas"
JOB_GROUP_INDEX = "jobset.sigs.k8s.io/job-group-index"
GLOBAL_REPLICAS = "jobset.sigs.k8s.io/global-replicas"
JOB_GLOBAL_INDEX = "jobset.sigs.k8s.io/job-global-index"
REPLICATED_JOB_REPLICAS = "jobset.sigs.k8s.io/replicatedjob-replicas"
JOB_KEY = "jobset.sigs.k8s.io/job-key"


def global_replicas(js: Mapping[str, Any]) -> str:
    """globalReplicas: every replica of every replicated job."""
    return str(sum(int(rjob.get("replicas", 1)) for rjob in js["spec"]["replicatedJobs"]))


def global_job_index(js: Mapping[str, Any], rjob_name: str, index: int) -> str:
    """globalJobIndex: the Job's place among all Jobs; "" for an unknown replicated job."""
    before = 0
    for rjob in js["spec"]["replicatedJobs"]:
        if rjob["name"] == rjob_name:
            return str(before + index)
        before += int(rjob.get("replicas", 1))
    return ""


def group_replicas(js: Mapping[str, Any], group: str) -> str:
    """groupReplicas."""
    return str(
        sum(
            int(rjob.get("replicas", 1))
            for rjob in js["spec"]["replicatedJobs"]
            if rjob.get("groupName") == group
        )
    )


def group_job_index(js: Mapping[str, Any], group: str, rjob_name: str, index: int) -> str:
    """groupJobIndex: the Job's place among its group's Jobs; "" outside the group."""
    before = 0
    for rjob in js["spec"]["replicatedJobs"]:
        if rjob.get("groupName") == group:
            if rjob["name"] == rjob_name:
                return str(before + index)
            before += int(rjob.get("replicas", 1))
    return ""


def label_and_annotate(
    js: Mapping[str, Any], rjob: Mapping[str, Any], index: int
) -> tuple[dict[str, str], dict[str, str]]:
    """labelAndAnnotateObject: what the controller puts on a child Job and its pod template
    (the same keys as labels and annotations; RestartJob's key only with its alpha gate)."""
    meta = js["metadata"]
    group = rjob.get("groupName", "default")
    job = child_job_name(meta["name"], rjob["name"], index)
    found = {
        JOBSET_NAME: meta["name"],
        JOBSET_UID: meta.get("uid", ""),
        REPLICATED_JOB: rjob["name"],
        RESTART_ATTEMPT: str((js.get("status") or {}).get("restarts") or 0),
        REPLICATED_JOB_REPLICAS: str(rjob.get("replicas", 1)),
        GLOBAL_REPLICAS: global_replicas(js),
        JOB_INDEX: str(index),
        JOB_KEY: hashlib.sha1(f"{meta.get('namespace', '')}/{job}".encode()).hexdigest(),
        JOB_GLOBAL_INDEX: global_job_index(js, rjob["name"], index),
        GROUP_NAME: group,
        GROUP_REPLICAS: group_replicas(js, group),
        JOB_GROUP_INDEX: group_job_index(js, group, rjob["name"], index),
    }
    return dict(found), dict(found)


def pod_set(rjob: Mapping[str, Any]) -> dict[str, Any]:
    """The Workload pod set Kueue makes of a replicated job: its pods (replicas x parallelism)
    and the topology its pod template asks for (`kueue.x-k8s.io/podset-required-topology` or
    `-preferred-topology`: concepts/topology_aware_scheduling.md; the Workload's
    `topologyRequest`)."""
    job = rjob["template"]["spec"]
    annotations = job["template"].get("metadata", {}).get("annotations", {})
    request = {
        field: annotations[key]
        for field, key in (("required", REQUIRED_TOPOLOGY), ("preferred", PREFERRED_TOPOLOGY))
        if key in annotations
    }
    found: dict[str, Any] = {
        "name": rjob["name"],
        "count": int(rjob.get("replicas", 1)) * int(job.get("parallelism", 1)),
    }
    if request:
        found["topologyRequest"] = request
    return found


def _targets(js: Mapping[str, Any]) -> list[str]:
    return list((js["spec"].get("successPolicy") or {}).get("targetReplicatedJobs") or [])


def job_matches_success_policy(js: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """jobMatchesSuccessPolicy: no targets match every Job."""
    targets = _targets(js)
    return not targets or _labels(job).get(REPLICATED_JOB) in targets


def replicated_job_matches_success_policy(js: Mapping[str, Any], rjob: Mapping[str, Any]) -> bool:
    """replicatedJobMatchesSuccessPolicy."""
    targets = _targets(js)
    return not targets or rjob["name"] in targets


def num_jobs_matching_success_policy(
    js: Mapping[str, Any], jobs: Sequence[Mapping[str, Any]]
) -> int:
    """numJobsMatchingSuccessPolicy."""
    return sum(1 for job in jobs if job_matches_success_policy(js, job))


def num_jobs_expected_to_succeed(js: Mapping[str, Any]) -> int:
    """numJobsExpectedToSucceed: `Any` one, `All` every replica of the matching replicated jobs."""
    match (js["spec"].get("successPolicy") or {}).get("operator"):
        case "Any":
            return 1
        case "All":
            return sum(
                int(rjob.get("replicas", 1))
                for rjob in js["spec"].get("replicatedJobs") or []
                if replicated_job_matches_success_policy(js, rjob)
            )
    return 0


def job_finished(job: Mapping[str, Any]) -> tuple[bool, str]:
    """JobFinished: (True, "Complete" | "Failed") once either condition is True; a
    FailureTarget or Suspended Job has not finished."""
    for found in (job.get("status") or {}).get("conditions") or ():
        if found.get("type") in ("Complete", "Failed") and found.get("status") == "True":
            return True, str(found["type"])
    return False, ""


FAILED_JOBS_MESSAGE = "jobset failed due to one or more job failures"
REACHED_MAX_RESTARTS = "jobset failed due to reaching max number of restarts"
RESTART_ACTIONS = frozenset({"RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts"})
# RestartJob and RestartJobAndIgnoreMaxRestarts need the alpha feature gate RestartJob (off by
# default in v0.12): the webhook refuses them, and tfdist does not emit them.
ALPHA_ACTIONS = frozenset({"RestartJob", "RestartJobAndIgnoreMaxRestarts"})


def with_first_failed_job(message: str, job: str) -> str:
    """messageWithFirstFailedJob."""
    return f"{message} (first failed job: {job})"


def _failure(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Job's Failed condition while it is True (findJobFailureCondition)."""
    for found in (job.get("status") or {}).get("conditions") or ():
        if found.get("type") == "Failed" and found.get("status") == "True":
            return dict(found)
    return None


def _failed_when(job: Mapping[str, Any]) -> tuple[float, int]:
    """When the Job failed; of two in the same second (the resolution of the API's times)
    the one the fake failed first."""
    failed = _failure(job) or {}
    return _seconds(failed["lastTransitionTime"]), (job.get("status") or {}).get("failedOrder", 0)


def find_first_failed_job(jobs: Sequence[Mapping[str, Any]]) -> Any:
    """findFirstFailedJob: the Job whose Failed condition is the oldest; None if none failed."""
    failed = [job for job in jobs if _failure(job) is not None]
    return min(failed, key=_failed_when) if failed else None


def first_failed_rule_and_job(
    rules: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]
) -> tuple[Any, Any]:
    """findFirstFailedPolicyRuleAndJob: the first rule, in order, that applies to a failed Job,
    and the earliest-failed Job it applies to; (None, None) when no rule applies."""
    failed = sorted((job for job in jobs if _failure(job) is not None), key=_failed_when)
    for rule in rules:
        for job in failed:
            if rule_applies(rule, job):
                return rule, job
    return None, None


def fail_jobset(js: dict[str, Any], reason: str, message: str, now: str) -> None:
    """setJobSetFailedCondition: Failed, RestartingJobSet False, terminal state Failed."""
    _set(js, "Failed", "True", reason, message, now)
    _set(js, "RestartingJobSet", "False", "JobSetFailed", "jobset failed", now)
    js["status"]["terminalState"] = "Failed"


def apply_failure_policy_rule_action(
    js: dict[str, Any],
    job: Mapping[str, Any],
    rule: Mapping[str, Any] | None,
    action: str,
    now: str,
) -> None:
    """applyFailurePolicyRuleAction on the JobSet's status: FailJobSet fails it;
    RestartJobSet restarts it (counted) unless `restartsCountTowardsMax` has reached
    `maxRestarts`, which fails it; RestartJobSetAndIgnoreMaxRestarts restarts it uncounted."""
    status = js.setdefault("status", {})
    name = job["metadata"]["name"]
    if action == "FailJobSet":
        message = with_first_failed_job("applying FailJobSet failure policy action", name)
        fail_jobset(js, "FailJobSetFailurePolicyAction", message, now)
        return
    if action in ALPHA_ACTIONS:
        raise NotImplementedError(f"{action} needs the alpha feature gate RestartJob")
    if action not in RESTART_ACTIONS:
        raise ValueError(f"failed to find a corresponding action for {action}")
    counts = action == "RestartJobSet"
    used = int(status.get("restartsCountTowardsMax") or 0)
    if counts and used >= int(js["spec"]["failurePolicy"].get("maxRestarts") or 0):
        fail_jobset(
            js, "ReachedMaxRestarts", with_first_failed_job(REACHED_MAX_RESTARTS, name), now
        )
        return
    status["restarts"] = int(status.get("restarts") or 0) + 1
    status["restartsCountTowardsMax"] = used + int(counts)
    named = (rule or {}).get("name")
    reason = f"FailurePolicy_{named}" if named else "DefaultFailurePolicy"
    message = with_first_failed_job(f"applying {action} failure policy action", name)
    _set(js, "RestartingJobSet", "True", reason, message, now)


def rule_applies(rule: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """ruleIsApplicable: reasons, message patterns (regular expressions, any matches) and
    target replicated jobs; an empty list matches anything."""
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    reasons = rule.get("onJobFailureReasons") or []
    patterns = rule.get("onJobFailureMessagePatterns") or []
    targets = rule.get("targetReplicatedJobs") or []
    return (
        (not reasons or failed.get("reason") in reasons)
        and (not patterns or any(re.search(p, failed.get("message", "")) for p in patterns))
        and (not targets or _labels(job).get(REPLICATED_JOB) in targets)
    )


POD_FAILURE_ACTIONS = frozenset({"FailJob", "FailIndex", "Ignore", "Count"})


def match_pod_failure_policy(
    policy: Mapping[str, Any] | None, pod: Mapping[str, Any]
) -> tuple[str | None, bool, str | None]:
    """The Job controller's matchPodFailurePolicy (kubernetes pkg/controller/job/
    pod_failure_policy.go) for a failed pod: (the Job's failure message for a FailJob rule,
    whether the failure counts against `backoffLimit`, the matching rule's action). Rules in
    order, the first match wins; a rule with an unknown action or operator is skipped; on exit
    codes, containers (init containers first) that have not terminated or ended with 0 are
    skipped; no match counts the failure."""
    meta, status = pod["metadata"], pod["status"]
    where = f"{meta.get('namespace', '')}/{meta['name']}"
    for index, rule in enumerate((policy or {}).get("rules", [])):
        action = rule.get("action")
        if action not in POD_FAILURE_ACTIONS:
            continue
        exits = rule.get("onExitCodes")
        if exits is not None:
            if exits.get("operator") not in ("In", "NotIn"):
                continue
            containers = [
                *(status.get("initContainerStatuses") or []),
                *(status.get("containerStatuses") or []),
            ]
            for container in containers:
                ended = (container.get("state") or {}).get("terminated")
                if not ended or ended.get("exitCode", 0) == 0:
                    continue
                if exits.get("containerName") not in (None, container.get("name")):
                    continue
                inside = ended["exitCode"] in exits.get("values", [])
                if inside == (exits["operator"] == "In"):
                    message = (
                        f"Container {container.get('name', '')} for pod {where} failed with "
                        f"exit code {ended['exitCode']} matching {action} rule at index {index}"
                    )
                    return _outcome(action, message)
            continue
        for pattern in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond["type"] == pattern["type"] and cond["status"] == pattern.get(
                    "status", "True"
                ):
                    message = (
                        f"Pod {where} has condition {cond['type']} matching {action} rule at "
                        f"index {index}"
                    )
                    return _outcome(action, message)
    return None, True, None


def _outcome(action: str, message: str) -> tuple[str | None, bool, str | None]:
    if action == "FailJob":
        return message, True, action
    return None, action != "Ignore", action


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _true(obj: Mapping[str, Any], kind: str) -> bool:
    return any(
        c["type"] == kind and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _set(obj: dict[str, Any], kind: str, status: str, reason: str, message: str, now: str) -> None:
    """Set a condition, keeping its transition time when its status does not change."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    old = next((c for c in conditions if c["type"] == kind), None)
    since = old["lastTransitionTime"] if old and old["status"] == status else now
    new = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    obj["status"]["conditions"] = [c for c in conditions if c["type"] != kind] + [new]


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _suffix(number: int) -> str:
    digits = []
    for _ in range(5):
        number, rest = divmod(number, len(_ALPHABET))
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))
