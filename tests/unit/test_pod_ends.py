"""The one reading of how a pod ended (`tfdist.kubernetes.pods`), by value, on pod statuses as
the Kubernetes API returns them for every way a pod ends; and the fake cluster producing each.

No API server or kubelet can run here: the statuses below are written after those the
kubelet, the scheduler and the Eviction API set (Kubernetes docs "Pod disruption
conditions", "Node-pressure eviction", "Graceful node shutdown"; `kubectl get pod -o json`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tfdist.kubernetes.pods import Phase, Timeouts, pod_end, read_pod
from tfdist.lifecycle import Ending
from tfdist.testing.kube_api import FakeKubeApi

CREATED = "2027-01-15T08:00:00Z"
T0 = 1_800_000_000.0
IMAGE = "us-central1-docker.pkg.dev/p/tfdist/trainer:0.1.0"


def pod(
    phase: str,
    *,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-abc-worker-0-0-x2b4k", "creationTimestamp": CREATED},
        "spec": {"nodeName": "gke-gpu-spot-pool-1", "containers": [{"image": IMAGE}]},
        "status": {
            "phase": phase,
            **status,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED},
                *conditions,
            ],
            "containerStatuses": [{"name": "tensorflow", "state": state or {}}],
        },
    }


def terminated(code: int, reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "finishedAt": CREATED}}


def disruption(reason: str, message: str) -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}


SCHEDULER = "Kubernetes default scheduler: preempting to accommodate a higher priority pod"
SHUTDOWN = "Pod was terminated in response to imminent node shutdown."
PRESSURE = "The node was low on resource: memory. Threshold quantity: 100Mi."

# case -> (pod status, ending, exit code, words)
ENDS: dict[str, tuple[dict[str, Any], Ending, int | None, str]] = {
    "preempted by the scheduler (no pod reason)": (
        pod(
            "Failed",
            state=terminated(137),
            conditions=[disruption("PreemptionByScheduler", SCHEDULER)],
        ),
        Ending.PREEMPTED,
        137,
        f"preempted: PreemptionByScheduler: {SCHEDULER}",
    ),
    "evicted through the Eviction API (a drain)": (
        pod(
            "Failed",
            state=terminated(143),
            conditions=[disruption("EvictionByEvictionAPI", "Eviction API: evicting")],
        ),
        Ending.PREEMPTED,
        143,
        "preempted: EvictionByEvictionAPI: Eviction API: evicting",
    ),
    "evicted by the kubelet under node pressure": (
        pod(
            "Failed",
            state=terminated(137),
            conditions=[disruption("TerminationByKubelet", PRESSURE)],
            reason="Evicted",
            message=PRESSURE,
        ),
        Ending.PREEMPTED,
        137,
        f"preempted: Evicted: {PRESSURE}",
    ),
    "evicted, from a kubelet that sets no DisruptionTarget": (
        pod("Failed", state=terminated(137), reason="Evicted", message=PRESSURE),
        Ending.PREEMPTED,
        137,
        f"preempted: Evicted: {PRESSURE}",
    ),
    "its node shut down (spot VM reclaimed)": (
        pod(
            "Failed",
            state=terminated(143),
            conditions=[disruption("TerminationByKubelet", SHUTDOWN)],
            reason="Terminated",
            message=SHUTDOWN,
        ),
        Ending.PREEMPTED,
        143,
        f"preempted: Terminated: {SHUTDOWN}",
    ),
    "out of memory": (
        pod("Failed", state=terminated(137, "OOMKilled")),
        Ending.OOM_KILLED,
        137,
        "out of memory (OOM-killed, exit code 137)",
    ),
    "killed by SIGKILL (no OOM, no disruption)": (
        pod("Failed", state=terminated(137)),
        Ending.CRASHED,
        137,
        "killed by SIGKILL (exit code 137)",
    ),
    "killed by SIGTERM": (
        pod("Failed", state=terminated(143)),
        Ending.CRASHED,
        143,
        "killed by SIGTERM (exit code 143)",
    ),
    "the program failed": (
        pod("Failed", state=terminated(1)),
        Ending.PROGRAM_ERROR,
        1,
        "exit code 1",
    ),
    "rejected by the kubelet at admission (never ran, no exit code)": (
        pod("Failed", reason="OutOfcpu", message="Pod Node didn't have enough resource: cpu"),
        Ending.CRASHED,  # the Job controller counts it as a failure too
        None,
        "ended without an exit code",
    ),
    "succeeded": (
        pod("Succeeded", state=terminated(0, "Completed")),
        Ending.SUCCEEDED,
        0,
        "exit code 0",
    ),
}


@pytest.mark.parametrize("case", list(ENDS))
def test_every_way_a_pod_ends_is_read_as_the_lifecycle_reads_it(case: str) -> None:
    status, ending, code, words = ENDS[case]
    end = pod_end(status)
    assert end is not None
    assert (end.ending, end.exit_code, end.describe()) == (ending, code, words)
    state = read_pod(status, T0, Timeouts())
    assert (state.phase, state.end, state.detail) == (Phase.ENDED, end, words)


def test_a_preempted_pod_is_never_a_crash_whatever_its_exit_code() -> None:
    for code in (0, 1, 2, 137, 143):
        scheduler = [disruption("PreemptionByScheduler", SCHEDULER)]
        end = pod_end(pod("Failed", state=terminated(code), conditions=scheduler))
        assert end is not None and end.ending is Ending.PREEMPTED, code


def test_a_disruption_target_on_a_running_pod_is_not_an_end_yet() -> None:
    """The condition comes before the kill (a graceful shutdown, the taint manager): until the
    pod is terminal it runs."""
    running = {"running": {"startedAt": CREATED}}
    status = pod(
        "Running", state=running, conditions=[disruption("DeletionByTaintManager", "Taint")]
    )
    assert pod_end(status) is None
    assert read_pod(status).phase is Phase.RUNNING
    false = {**disruption("PreemptionByScheduler", SCHEDULER), "status": "False"}
    ended = pod_end(pod("Failed", state=terminated(1), conditions=[false]))
    assert ended is not None and ended.ending is Ending.PROGRAM_ERROR


def waiting(reason: str, message: str) -> dict[str, Any]:
    return pod("Pending", state={"waiting": {"reason": reason, "message": message}})


def unscheduled(message: str) -> dict[str, Any]:
    status = pod("Pending")
    status["spec"].pop("nodeName")
    status["status"].pop("containerStatuses")
    status["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": CREATED,
        }
    ]
    return status


GPUS = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
PULL = f'Back-off pulling image "{IMAGE}"'


def _created() -> float:
    from tfdist.kubernetes.pods import timestamp

    found = timestamp(CREATED)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("status", "after", "phase", "detail", "ending"),
    [
        pytest.param(
            unscheduled(GPUS),
            899,
            Phase.PENDING,
            f"pending: Unschedulable: {GPUS}",
            None,
            id="unschedulable",
        ),
        pytest.param(
            unscheduled(GPUS),
            901,
            Phase.ENDED,
            f"not scheduled within 900 s (scheduling timeout): Unschedulable: {GPUS}",
            Ending.NOT_STARTED,
            id="unschedulable-too-long",
        ),
        pytest.param(
            waiting("ImagePullBackOff", PULL),
            599,
            Phase.PENDING,
            f"pending on gke-gpu-spot-pool-1: cannot pull image {IMAGE}: ImagePullBackOff: {PULL}",
            None,
            id="image-pull-backoff",
        ),
        pytest.param(
            waiting("ErrImagePull", "manifest unknown"),
            601,
            Phase.ENDED,
            "scheduled on gke-gpu-spot-pool-1 but its container did not start within 600 s: "
            f"cannot pull image {IMAGE}: ErrImagePull: manifest unknown",
            Ending.NOT_STARTED,
            id="image-pull-error-too-long",
        ),
        pytest.param(
            waiting("InvalidImageName", "couldn't parse image name"),
            1,
            Phase.ENDED,
            "scheduled on gke-gpu-spot-pool-1 but its container did not start: cannot pull "
            f"image {IMAGE}: InvalidImageName: couldn't parse image name",
            Ending.NOT_STARTED,
            id="invalid-image-name-at-once",
        ),
        pytest.param(
            pod("Unknown", state={"running": {"startedAt": CREATED}}),
            1,
            Phase.RUNNING,
            "running, but its node stopped reporting (Unknown)",
            None,
            id="node-lost",
        ),
    ],
)
def test_a_waiting_pod_says_why_and_ends_as_never_started_past_its_timeout(
    status: dict[str, Any], after: float, phase: Phase, detail: str, ending: Ending | None
) -> None:
    state = read_pod(status, _created() + after, Timeouts())
    assert (state.phase, state.detail) == (phase, detail)
    assert (state.end.ending if state.end else None) is ending
    if phase is Phase.ENDED and ending is Ending.NOT_STARTED and after > 1:
        # without timeouts (a JobSet role: the engine bounds the wait) it still waits
        assert read_pod(status, _created() + after).phase is Phase.PENDING


def started(api: FakeKubeApi) -> str:
    api.create_pod(
        "ml",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "tensorflow", "image": IMAGE}]},
        },
    )
    api.start("p")
    return "p"


# The fake cluster produces each end; the classifier reads it as it reads the real statuses.
FAKE_ENDS: dict[str, tuple[Callable[[FakeKubeApi, str], None], str]] = {
    "preempted by the scheduler (no pod reason)": (
        lambda api, name: api.preempt_by_scheduler(name),
        "preempted by the scheduler (no pod reason)",
    ),
    "evicted through the Eviction API (a drain)": (
        lambda api, name: api.evict_pod(name, by_api=True),
        "evicted through the Eviction API (a drain)",
    ),
    "evicted by the kubelet under node pressure": (
        lambda api, name: api.evict_pod(name, by_api=False),
        "evicted by the kubelet under node pressure",
    ),
    "its node shut down": (
        lambda api, name: api.preempt(name),
        "its node shut down (spot VM reclaimed)",
    ),
    "out of memory": (lambda api, name: api.oom(name), "out of memory"),
    "SIGKILL": (lambda api, name: api.exit(name, 137), "killed by SIGKILL (no OOM, no disruption)"),
    "program error": (lambda api, name: api.exit(name, 1), "the program failed"),
}


@pytest.mark.parametrize("case", list(FAKE_ENDS))
def test_the_fake_cluster_produces_each_end_as_the_real_one_reads(case: str) -> None:
    act, real = FAKE_ENDS[case]
    api = FakeKubeApi(clock=lambda: T0)
    act(api, started(api))
    end, expected = pod_end(api.pod("p")), pod_end(ENDS[real][0])
    assert end is not None and expected is not None
    assert (end.ending, end.exit_code, end.describe()) == (
        expected.ending,
        expected.exit_code,
        expected.describe(),
    )
