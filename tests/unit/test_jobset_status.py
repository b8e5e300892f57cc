"""Each role's state and "why it waits" from a JobSet, its pods and its Kueue Workload.

No cluster can run here: the objects come from the shipped `FakeJobSetCluster` (JobSet, Job
and Kueue controllers following their documented semantics), driven as a kubelet and Kueue
would, and are read back as a client would (`get_object`, `list_pods`, `list_objects`).
"""

from __future__ import annotations

from typing import Any

import pytest

from tfdist.backend import RoleState
from tfdist.kubernetes.api import JOBSETS, WORKLOADS
from tfdist.kubernetes.jobset import (
    JOBSET_NAME,
    JobSetOptions,
    jobset_name,
    plan_jobset,
)
from tfdist.kubernetes.jobset_status import RoleView, admission, role_views
from tfdist.kubernetes.kueue import Kueue, QueuePosition
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.names import RunRef
from tfdist.records import Admission
from tfdist.spec import parse_spec
from tfdist.testing.jobset_cluster import JOB_UID, FakeJobSetCluster

REF = RunRef(dag="nightly", run="run-1", launch="l1")
SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 10},
        "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 2},
        "model_dir": "gs://bucket/m",
    }
)
NAME = jobset_name(SPEC.name, REF)
QUEUED = JobSetOptions(kueue=Kueue(queue_name="gpu-queue"))


def launch(options: JobSetOptions | None = None) -> FakeJobSetCluster:
    api = FakeJobSetCluster()
    api.create_object(JOBSETS, "ml", plan_jobset(SPEC, Target(namespace="ml"), options, REF))
    return api


def views(api: FakeJobSetCluster) -> dict[str, RoleView]:
    jobset = api.get_object(JOBSETS, "ml", NAME)
    workloads: list[dict[str, Any]] = []
    if jobset is not None:
        uid = jobset["metadata"]["uid"]
        workloads = api.list_objects(WORKLOADS, "ml", {JOB_UID: uid})
    pods = api.list_pods("ml", {JOBSET_NAME: NAME})
    return role_views(SPEC, jobset, pods, workloads[0] if workloads else None)


def state(api: FakeJobSetCluster, role: str) -> tuple[RoleState, str]:
    status = views(api)[role].status
    return status.state, status.detail


def start_all(api: FakeJobSetCluster) -> None:
    for role, index in (("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0), ("evaluator", 0)):
        api.start(api.current_pod(NAME, role, index))


def test_queued_in_kueue_then_waiting_for_nodes_then_running() -> None:
    api = launch(QUEUED)
    assert state(api, "chief-0") == (
        RoleState.PENDING,
        "queued in Kueue (queue gpu-queue): Pending: waiting for the scheduler",
    )
    assert api.pods == {}  # nothing runs before admission: all or nothing
    api.pending(
        NAME,
        "couldn't assign flavors to pod set chief: insufficient unused quota "
        "for nvidia.com/gpu in flavor l4, 1 more needed",
    )
    assert state(api, "worker-1")[1].endswith(
        "insufficient unused quota for nvidia.com/gpu in flavor l4, 1 more needed"
    )
    api.reserve_quota(NAME, "gpu-cluster-queue", {"dws-prov": "Waiting for resources (flex-start)"})
    assert state(api, "ps-0") == (
        RoleState.PENDING,
        "admitted to quota in cluster queue gpu-cluster-queue, waiting for nodes "
        "(admission checks: dws-prov Pending: Waiting for resources (flex-start))",
    )
    api.admit(NAME, "gpu-cluster-queue")
    assert state(api, "chief-0") == (RoleState.PENDING, "pod pending: waiting for a node")
    api.unschedulable(api.current_pod(NAME, "chief", 0), "0/3 nodes are available")
    assert state(api, "chief-0")[1] == "pod pending: Unschedulable: 0/3 nodes are available"
    api.start(api.current_pod(NAME, "chief", 0))
    assert state(api, "chief-0") == (RoleState.RUNNING, "")


def test_a_program_error_fails_every_role_at_once_naming_the_culprit() -> None:
    api = launch()
    start_all(api)
    api.exit(api.current_pod(NAME, "worker", 1), 3)
    seen = views(api)
    culprit = (
        "worker-1 failed with exit code 3: a failure of the program itself, which no restart fixes"
    )
    assert (seen["worker-1"].status.state, seen["worker-1"].status.detail) == (
        RoleState.FAILED,
        culprit,
    )
    assert seen["worker-1"].status.exit_code == 3
    assert seen["chief-0"].status.state is RoleState.FAILED
    assert seen["chief-0"].status.detail == f"the job failed: {culprit}"


def test_a_program_error_fails_a_role_once_the_jobset_failed_not_before() -> None:
    """The watch reads what the cluster did: until the JobSet controller failed the set, the
    role waits, saying what the compiled policy will do."""
    api = launch()
    start_all(api)
    api.pause()  # the watch polls between the pod's end and the controllers' reaction
    api.exit(api.current_pod(NAME, "worker", 1), 3)
    assert state(api, "worker-1") == (
        RoleState.PENDING,
        "ending the job: worker-1 failed with exit code 3: a failure of the program itself, "
        "which no restart fixes",
    )
    assert state(api, "chief-0")[0] is RoleState.RUNNING
    api.resume()
    assert state(api, "worker-1")[0] is RoleState.FAILED
    assert state(api, "chief-0")[0] is RoleState.FAILED


def test_the_evaluator_restarts_alone_and_says_so() -> None:
    api = launch()
    start_all(api)
    chief = api.current_pod(NAME, "chief", 0)
    first = api.current_pod(NAME, "evaluator", 0)
    api.exit(first, 137)
    second = api.current_pod(NAME, "evaluator", 0)
    assert second != first and api.current_pod(NAME, "chief", 0) == chief
    status = views(api)["evaluator-0"]
    assert status.pod == second and status.status.state is RoleState.PENDING
    assert status.status.detail == (
        "pod pending: waiting for a node (restart 1 of evaluator-0 alone, 1 of 2 counted, "
        "after killed by SIGKILL (exit code 137))"
    )
    api.start(second)
    assert views(api)["evaluator-0"].status.state is RoleState.RUNNING


@pytest.mark.parametrize(
    "disrupt",
    [
        pytest.param(lambda api, pod: api.preempt_by_scheduler(pod), id="scheduler"),
        pytest.param(lambda api, pod: api.evict_pod(pod, by_api=True), id="eviction-api"),
        pytest.param(lambda api, pod: api.evict_pod(pod, by_api=False), id="node-pressure"),
        pytest.param(lambda api, pod: api.preempt(pod), id="node-shutdown"),
    ],
)
def test_a_preempted_evaluator_is_replaced_and_never_counted(disrupt: Any) -> None:
    """However it was preempted (the scheduler sets no pod reason), the Job replaces the pod
    without counting it, and the watch counts as the Job does: 0 of the budget, every time."""
    api = launch()
    start_all(api)
    for restart in (1, 2, 3):  # more than max_role_restarts: none of them counts
        disrupt(api, api.current_pod(NAME, "evaluator", 0))
        view = views(api)["evaluator-0"].status
        assert view.state is RoleState.PENDING
        assert view.detail.startswith(
            f"pod pending: waiting for a node (restart {restart} of evaluator-0 alone, 0 of 2 "
            "counted, after preempted"
        ), view.detail
        api.start(api.current_pod(NAME, "evaluator", 0))
    assert not any(
        c["type"] == "Failed" and c["status"] == "True"
        for c in api.jobset(NAME)["status"].get("conditions", [])
    )


def test_a_chief_out_of_memory_restarts_the_job_and_is_reported_as_such() -> None:
    api = launch()
    start_all(api)
    api.oom(api.current_pod(NAME, "chief", 0))
    assert api.jobset(NAME)["status"]["restarts"] == 1
    assert state(api, "worker-0") == (
        RoleState.PENDING,
        "pod pending: waiting for a node (job restart 1, 1 of 2 counted, after chief-0 failed)",
    )
    restarting = api.jobset(NAME)["status"]["conditions"]
    assert any(c["type"] == "RestartingJobSet" and c["status"] == "True" for c in restarting)


def test_a_chief_out_of_memory_seen_before_the_controller_acts_says_what_happens() -> None:
    api = launch()
    start_all(api)
    api.pause()  # the watch polls between the pod's end and the controllers' reaction
    api.oom(api.current_pod(NAME, "chief", 0))
    assert state(api, "chief-0") == (
        RoleState.PENDING,
        "restarting: chief-0 ran out of memory (OOM-killed, exit code 137); restarting every "
        "role from the last checkpoint (restart 1 of 2)",
    )
    api.resume()
    start_all(api)
    assert state(api, "chief-0") == (RoleState.RUNNING, "job restart 1, 1 of 2 counted")


def test_out_of_memory_with_no_restart_left_fails_saying_out_of_memory() -> None:
    api = launch()
    start_all(api)
    for _ in range(2):
        api.oom(api.current_pod(NAME, "chief", 0))
    api.oom(api.current_pod(NAME, "chief", 0))
    status = views(api)["chief-0"].status
    assert status.state is RoleState.FAILED
    assert status.detail == (
        "chief-0 ran out of memory (OOM-killed, exit code 137); all 2 restarts used "
        "(restart_policy.max_job_restarts: 2)"
    )


@pytest.mark.parametrize("role", ["chief-0", "ps-0", "evaluator-0"])
def test_a_completed_jobset_ends_every_role_as_succeeded(role: str) -> None:
    api = launch()
    start_all(api)
    api.exit(api.current_pod(NAME, "chief", 0), 0)
    assert state(api, "ps-0")[0] is RoleState.RUNNING  # waits for the evaluator
    api.exit(api.current_pod(NAME, "evaluator", 0), 0)
    assert state(api, role)[0] is RoleState.SUCCEEDED


def test_a_deleted_jobset_fails_its_roles() -> None:
    api = launch()
    api.delete_object(JOBSETS, "ml", NAME, foreground=True)
    assert state(api, "chief-0") == (
        RoleState.FAILED,
        "its JobSet is gone: deleted (stopped, torn down, or past ttlSecondsAfterFinished)",
    )


def test_of_two_pods_created_in_the_same_second_the_live_one_is_current() -> None:
    """Kubernetes timestamps have one-second resolution; a Job runs one pod at a time."""
    from tfdist.kubernetes.jobset import JOB_INDEX, REPLICATED_JOB, RESTART_ATTEMPT
    from tfdist.kubernetes.jobset_status import replica_pods
    from tfdist.lifecycle import RoleId

    def pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
        labels = {REPLICATED_JOB: "evaluator", JOB_INDEX: "0", RESTART_ATTEMPT: "0"}
        stamp = "2027-01-15T08:00:00Z"
        return {
            "metadata": {"name": name, "labels": labels, "creationTimestamp": stamp},
            "status": status,
        }

    ended = pod("js-evaluator-0-0-zzzzz", {"phase": "Failed"})
    live = pod("js-evaluator-0-0-aaaaa", {"phase": "Pending"})
    found = replica_pods([live, ended], RoleId.parse("evaluator-0"), 0)
    assert [p["metadata"]["name"] for p in found] == [
        ended["metadata"]["name"],
        live["metadata"]["name"],
    ]


def test_a_queue_position_in_words() -> None:
    from tfdist.kubernetes.kueue import QueuePosition

    pending = [
        {"metadata": {"name": f"w{i}"}, "positionInLocalQueue": i, "positionInClusterQueue": i + 9}
        for i in range(12)
    ]
    found = QueuePosition.find(pending, "w10", 3 * 3600 + 5 * 60 + 59)
    assert found is not None
    assert found.describe() == "11th of 12 in it, 20th in its cluster queue; waiting 3 h 5 min"
    assert QueuePosition.find(pending, "w0", 59).describe() == (  # type: ignore[union-attr]
        "1st of 12 in it, 10th in its cluster queue; waiting under a minute"
    )
    assert QueuePosition.find(pending, "w2", None).describe() == (  # type: ignore[union-attr]
        "3rd of 12 in it, 12th in its cluster queue"
    )
    assert QueuePosition.find(pending, "gone", 1) is None


def test_the_wait_for_admission_from_queued_to_admitted_and_again_after_an_eviction() -> None:
    """The launch's `Admission`: since when Kueue holds it and why, and when it let it in. The
    times are the JobSet's own (created; its `Suspended` condition flipping)."""
    clock = [1000.0]
    api = FakeJobSetCluster(clock=lambda: clock[0])
    api.create_object(JOBSETS, "ml", plan_jobset(SPEC, Target(namespace="ml"), QUEUED, REF))

    def seen() -> Admission | None:
        jobset = api.get_object(JOBSETS, "ml", NAME)
        found = api.list_objects(WORKLOADS, "ml", {JOB_UID: jobset["metadata"]["uid"]})
        position = QueuePosition(in_local_queue=1, local_queue_size=3, in_cluster_queue=4)
        return admission(jobset, found[0] if found else None, position)

    queued = seen()
    assert queued == Admission(
        launch_id="l1",
        queue="gpu-queue",
        queued_at=1000.0,
        detail="queued in Kueue (queue gpu-queue: 2nd of 3 in it, 5th in its cluster queue): "
        "Pending: waiting for the scheduler",
    )
    clock[0] = 1600.0
    api.admit(NAME)
    admitted = seen()
    assert admitted == Admission(
        launch_id="l1", queue="gpu-queue", queued_at=1000.0, admitted_at=1600.0
    )
    assert queued.then(admitted) == admitted

    clock[0] = 2000.0
    api.evict(NAME, "PodsReadyTimeout", "pods not ready in time")
    requeued = seen()
    assert requeued is not None and requeued.waiting and requeued.queued_at == 2000.0
    assert requeued.detail.startswith("evicted by Kueue (PodsReadyTimeout: pods not ready")
    clock[0] = 2300.0
    api.admit(NAME)
    again = seen()
    # The JobSet alone no longer says since when it waited the second time; the watch does.
    assert again is not None and (again.queued_at, again.admitted_at) == (1000.0, 2300.0)
    assert requeued.then(again) == again.model_copy(update={"queued_at": 2000.0})


def test_no_queue_no_admission() -> None:
    api = launch()
    assert admission(api.get_object(JOBSETS, "ml", NAME)) is None
    assert admission(None) is None
