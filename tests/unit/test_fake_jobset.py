"""The shipped fake JobSet, Job and Kueue controllers follow the documented semantics.

Each case builds a small JobSet by hand (not by tfdist) so that the fake is checked against the
JobSet and Kubernetes documentation on its own: the tests of the backend rely on it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tfdist.kubernetes.api import JOBSETS
from tfdist.testing.jobset_cluster import FakeJobSetCluster


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def jobset(
    *,
    success: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
    backoff: int = 0,
    ttl: int | None = None,
) -> dict[str, Any]:
    def rjob(name: str, replicas: int) -> dict[str, Any]:
        pod = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
        return {
            "name": name,
            "replicas": replicas,
            "template": {"spec": {"backoffLimit": backoff, "template": {"spec": pod}}},
        }

    spec: dict[str, Any] = {"replicatedJobs": [rjob("leader", 1), rjob("workers", 2)]}
    if success is not None:
        spec["successPolicy"] = success
    if failure is not None:
        spec["failurePolicy"] = failure
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "js"},
        "spec": spec,
    }


def create(api: FakeJobSetCluster, manifest: dict[str, Any]) -> dict[str, Any]:
    api.create_object(JOBSETS, "ns", manifest)
    return api.jobset("js")


def condition(api: FakeJobSetCluster, kind: str) -> dict[str, Any] | None:
    for found in api.jobset("js")["status"].get("conditions", []):
        if found["type"] == kind and found["status"] == "True":
            return dict(found)
    return None


def test_child_jobs_pods_and_hostnames() -> None:
    """One Job per replica, `<jobset>-<rjob>-<index>`; its pod's hostname `<job>-0` in the
    subdomain named after the JobSet (concepts: DNS hostnames for Pods)."""
    api = FakeJobSetCluster()
    create(api, jobset())
    assert sorted(name for _, name in api.jobs) == ["js-leader-0", "js-workers-0", "js-workers-1"]
    pod = api.pod(api.current_pod("js", "workers", 1))
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("js-workers-1-0", "js")


def test_without_a_failure_policy_any_failed_job_fails_the_jobset() -> None:
    api = FakeJobSetCluster()
    create(api, jobset())
    api.exit(api.current_pod("js", "workers", 0), 1)
    failed = condition(api, "Failed")
    assert failed is not None and failed["reason"] == "FailedJobs"


def test_rules_in_order_first_match_wins_and_the_default_is_restart_jobset() -> None:
    rules = [
        {"name": "leaderFails", "action": "FailJobSet", "targetReplicatedJobs": ["leader"]},
        {"name": "anyRestarts", "action": "RestartJobSetAndIgnoreMaxRestarts"},
    ]
    api = FakeJobSetCluster()
    create(api, jobset(failure={"maxRestarts": 0, "rules": rules}))
    api.exit(api.current_pod("js", "workers", 0), 1)
    status = api.jobset("js")["status"]
    assert (status["restarts"], status["restartsCountTowardsMax"]) == (1, 0)  # second rule
    api.exit(api.current_pod("js", "leader", 0), 1)
    assert condition(api, "Failed")["reason"] == "FailJobSetFailurePolicyAction"  # type: ignore[index]
    default = FakeJobSetCluster()
    create(default, jobset(failure={"maxRestarts": 1, "rules": []}))
    default.exit(default.current_pod("js", "leader", 0), 1)
    assert default.jobset("js")["status"]["restartsCountTowardsMax"] == 1
    default.exit(default.current_pod("js", "leader", 0), 1)
    assert condition(default, "Failed")["reason"] == "ReachedMaxRestarts"  # type: ignore[index]


def test_a_restart_recreates_every_job_with_the_next_restart_attempt() -> None:
    api = FakeJobSetCluster()
    create(api, jobset(failure={"maxRestarts": 3, "restartStrategy": "BlockingRecreate"}))
    first = {api.current_pod("js", "workers", i) for i in (0, 1)}
    api.exit(api.current_pod("js", "leader", 0), 137)
    second = {api.current_pod("js", "workers", i) for i in (0, 1)}
    assert not first & second and not first & {name for _, name in api.pods}
    labels = api.pod(api.current_pod("js", "leader", 0))["metadata"]["labels"]
    assert labels["jobset.sigs.k8s.io/restart-attempt"] == "1"


def test_success_policy_all_of_the_targets_ends_the_set_and_deletes_running_jobs() -> None:
    api = FakeJobSetCluster()
    create(api, jobset(success={"operator": "All", "targetReplicatedJobs": ["leader"]}))
    running = api.current_pod("js", "workers", 0)
    api.start(running)
    api.exit(api.current_pod("js", "leader", 0), 0)
    assert condition(api, "Completed") is not None
    assert running not in {name for _, name in api.pods}
    assert ("ns", "js-workers-0") not in api.jobs


def test_backoff_limit_counts_failures_and_the_pod_failure_policy_can_ignore_them() -> None:
    api = FakeJobSetCluster()
    manifest = jobset(backoff=1)
    policy = {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }
        ]
    }
    manifest["spec"]["replicatedJobs"][1]["template"]["spec"]["podFailurePolicy"] = policy
    create(api, manifest)
    api.preempt(api.current_pod("js", "workers", 0))  # ignored: a new pod, not counted
    api.exit(api.current_pod("js", "workers", 0), 137)  # counted: 1 of backoffLimit 1
    assert api.jobs[("ns", "js-workers-0")]["status"]["failed"] == 1
    assert condition(api, "Failed") is None
    api.exit(api.current_pod("js", "workers", 0), 137)  # 2 > 1: the Job fails, so does the set
    job = api.jobs[("ns", "js-workers-0")]
    assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert condition(api, "Failed") is not None


def test_kueue_suspends_until_admission_then_every_pod_at_once() -> None:
    api = FakeJobSetCluster()
    manifest = jobset()
    manifest["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "q"}
    create(api, manifest)
    assert api.jobset("js")["spec"]["suspend"] is True and api.pods == {}
    api.admit("js")
    assert len(api.pods) == 3 and condition(api, "Suspended") is None
    api.evict("js", "PodsReadyTimeout", "not all pods ready in time")
    assert api.pods == {} and condition(api, "Suspended") is not None


def test_a_finished_jobset_goes_after_its_ttl() -> None:
    clock = Clock()
    api = FakeJobSetCluster(clock=clock)
    create(api, jobset(success={"operator": "Any"}, ttl=60))
    api.exit(api.current_pod("js", "workers", 1), 0)
    clock.now += 59
    assert api.get_object(JOBSETS, "ns", "js") is not None
    clock.now += 2
    assert api.get_object(JOBSETS, "ns", "js") is None
    assert api.pods == {} and api.jobs == {}


def test_controllers_that_never_settle_fail_loudly() -> None:
    """Two controllers undoing each other's work never settle: the fake raises at once rather
    than leave the cluster half-reconciled."""
    from tfdist.testing.jobset_cluster import MAX_PASSES, Unsettled

    class Fighting(FakeJobSetCluster):
        passes = 0

        def _pass(self) -> None:
            super()._pass()
            self.passes += 1
            for job in self.jobs.values():
                job["metadata"].setdefault("annotations", {})["flip"] = str(self.passes)

    api = Fighting()
    with pytest.raises(Unsettled, match=f"still change the cluster after {MAX_PASSES} passes"):
        api.create_object(JOBSETS, "ns", jobset())
    assert api.passes == MAX_PASSES
