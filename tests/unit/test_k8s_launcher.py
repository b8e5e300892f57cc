"""The Kubernetes launcher and the role tasks on it, driven against `FakeKubeApi`.

No Kubernetes API server can run here (no kind, k3s or Docker engine), so these tests use the
in-memory fake shipped in `tfdist.kubernetes.fake`: the tests play scheduler, kubelet and
cloud (schedule, start, exit, preempt pods) and inject the clock, so timeouts take no time.
The launch task's gs:// preflight and fingerprint are recorded here, not run: they are tested
against the GCS emulator in `tests/integration/test_gcs_operators.py`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from task_context import context, launched

from tfdist.backend import JobHandle, RoleState
from tfdist.kubernetes.api import KubeApiError
from tfdist.kubernetes.fake import FakeKubeApi
from tfdist.kubernetes.launcher import KubernetesLauncher
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.placement import JobPlacement, RolePlacement
from tfdist.kubernetes.status import Timeouts, pod_status
from tfdist.lifecycle import Ending
from tfdist.spec import JobSpec, parse_spec
from tfdist.supervisor import RestartJob, RestartRole

SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 400},
        "model_dir": "gs://bucket/models/nightly/run-1",
    }
)
SCOPE = "nightly/run-1/train_and_evaluate"
BASE = "gs://bucket/models"
TARGET = Target(
    namespace="ml",
    image="trainer:1",
    placement=JobPlacement(
        worker=RolePlacement(node_pool="gpu-spot-pool", accelerator="nvidia-l4", gpus=1, spot=True)
    ),
)
ROLES = ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")


class Clock:
    """Seconds since the epoch, moved on by hand (and by the launcher's `sleep`)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, secs: float) -> None:
        self.now += secs


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> FakeKubeApi:
    return FakeKubeApi(clock=clock)


def make_launcher(api: FakeKubeApi, clock: Clock, launch_id: str = "launch1") -> KubernetesLauncher:
    return KubernetesLauncher(
        api, TARGET, launch_ids=lambda: launch_id, clock=clock, sleep=clock.advance
    )


def launch(
    api: FakeKubeApi, clock: Clock, scope: str = SCOPE, **kwargs: Any
) -> tuple[KubernetesLauncher, JobHandle]:
    launcher = make_launcher(api, clock, **kwargs)
    handle = launcher.launch(launcher.plan(SPEC, scope))
    return launcher, handle


def pod_of(handle: JobHandle, role: str) -> str:
    return f"{handle.job_id.split('/')[1]}-{role}"


# -- launching ------------------------------------------------------------------------------
def test_launch_creates_the_service_and_every_pod_together(api: FakeKubeApi, clock: Clock) -> None:
    _, handle = launch(api, clock)
    service = handle.job_id.split("/")[1]
    assert handle.backend == "kubernetes" and handle.job_id == f"ml/{service}"
    assert handle.roles == ROLES and handle.launch_id == "launch1"
    # One request after the other, no waiting or reading in between: a gang.
    assert api.calls == [("create_service", service)] + [
        ("create_pod", f"{service}-{role}") for role in ROLES
    ]
    chief = api.pod(f"{service}-chief-0")
    tf_config = json.loads(
        next(e["value"] for e in chief["spec"]["containers"][0]["env"] if e["name"] == "TF_CONFIG")
    )
    assert tf_config["cluster"]["worker"] == [
        f"worker-0.{service}.ml.svc:2222",
        f"worker-1.{service}.ml.svc:2222",
    ]
    assert chief["spec"]["containers"][0]["command"] == ["python", "-m", "tfdist.runtime"]


def test_a_refused_pod_deletes_the_rest_so_no_role_runs_alone(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher = make_launcher(api, clock)
    job = launcher.plan(SPEC, SCOPE)
    service = job.cluster["chief"][0].split(".")[1]
    api.refuse.add(f"{service}-ps-0")
    with pytest.raises(KubeApiError, match=r"could not create every role of digits.*quota"):
        launcher.launch(job)
    assert api.pods == {} and api.services == {}


def test_launches_of_other_runs_and_tries_never_share_a_name(
    api: FakeKubeApi, clock: Clock
) -> None:
    handles = [
        launch(api, clock, scope=scope, launch_id=launch_id)[1]
        for scope in (SCOPE, "nightly/run-2/train_and_evaluate")
        for launch_id in ("try1", "try2")
    ]
    assert len({h.job_id for h in handles}) == 4
    assert len(api.pods) == 4 * len(ROLES)


# -- watching -------------------------------------------------------------------------------
def test_status_follows_the_pod_to_success(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "chief-0")
    first = launcher.statuses(handle)["chief-0"]
    assert first.state is RoleState.PENDING
    assert first.detail == "waiting to be scheduled: waiting for a node"
    api.schedule(name, "gke-gpu-pool-1")
    assert launcher.statuses(handle)["chief-0"].detail == "on gke-gpu-pool-1: ContainerCreating"
    api.start(name)
    assert launcher.statuses(handle)["chief-0"].state is RoleState.RUNNING
    api.exit(name, 0)
    done = launcher.statuses(handle)["chief-0"]
    assert (done.state, done.exit_code) == (RoleState.SUCCEEDED, 0)


def test_a_pod_that_never_schedules_fails_after_the_scheduling_timeout(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    why = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes"
    api.unschedulable(pod_of(handle, "worker-0"), why)
    clock.advance(899)
    waiting = launcher.statuses(handle)["worker-0"]
    assert waiting.state is RoleState.PENDING
    assert waiting.detail == f"waiting to be scheduled: Unschedulable: {why}"
    clock.advance(2)
    failed = launcher.statuses(handle)["worker-0"]
    assert failed.state is RoleState.FAILED and failed.exit_code is None
    assert failed.detail == (
        f"not scheduled within 900 s (scheduling timeout): Unschedulable: {why}"
    )


def test_image_pull_errors_show_then_fail_after_the_startup_timeout(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "ps-0")
    api.schedule(name, "cpu-node")
    api.wait(name, "ImagePullBackOff", 'Back-off pulling image "trainer:1"')
    shown = launcher.statuses(handle)["ps-0"]
    assert shown.state is RoleState.PENDING
    assert shown.detail == (
        "on cpu-node: cannot pull image trainer:1: ImagePullBackOff: Back-off pulling image "
        '"trainer:1"'
    )
    clock.advance(601)
    failed = launcher.statuses(handle)["ps-0"]
    assert failed.state is RoleState.FAILED
    assert failed.detail.startswith(
        "scheduled on cpu-node but its container did not start within 600 s: cannot pull image"
    )


def test_an_invalid_image_name_fails_at_once(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    api.schedule(pod_of(handle, "ps-0"))
    api.wait(pod_of(handle, "ps-0"), "InvalidImageName", "couldn't parse image name")
    assert launcher.statuses(handle)["ps-0"].state is RoleState.FAILED


@pytest.mark.parametrize(
    ("code", "reason", "ending"),
    [
        pytest.param(1, "Error", Ending.PROGRAM_ERROR, id="program-error"),
        pytest.param(127, "Error", Ending.PROGRAM_ERROR, id="127-permanent"),
        pytest.param(137, "OOMKilled", Ending.OOM_KILLED, id="oom-killed"),
        pytest.param(137, "Error", Ending.CRASHED, id="killed"),
        pytest.param(143, "Error", Ending.CRASHED, id="terminated"),
    ],
)
def test_a_pods_end_maps_to_the_policys_input(
    api: FakeKubeApi, clock: Clock, code: int, reason: str, ending: Ending
) -> None:
    launcher, handle = launch(api, clock)
    api.start(pod_of(handle, "worker-1"))
    api.exit(pod_of(handle, "worker-1"), code, reason)
    status = launcher.statuses(handle)["worker-1"]
    assert (status.state, status.exit_code, status.detail) == (RoleState.FAILED, code, reason)
    assert status.end is not None and status.end.ending is ending


def test_a_preempted_worker_is_retryable_and_recreated_once(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "worker-0")
    original = copy.deepcopy(api.pod(name))
    api.start(name)
    api.preempt(name, code=1)  # the program's own exit code does not matter
    status = launcher.statuses(handle)["worker-0"]
    assert status.state is RoleState.FAILED
    assert status.end is not None and status.end.ending is Ending.PREEMPTED
    assert status.detail == (
        "preempted (Terminated: Pod was terminated in response to imminent node shutdown.); "
        "container exit code 1"
    )
    api.calls.clear()
    launcher.apply(handle, RestartRole(role="worker-0"))
    assert api.calls == [("delete_pod", name), ("create_pod", name)]
    again = api.pod(name)
    assert again["metadata"]["labels"]["tfdist.io/try"] == "2"
    assert again["spec"] == original["spec"]  # same hostname, subdomain, GPU, spot, env
    assert launcher.statuses(handle)["worker-0"].state is RoleState.PENDING
    with pytest.raises(RuntimeError, match="worker-0 is still running"):
        launcher.apply(handle, RestartRole(role="worker-0"))
    assert [n for _, n in api.pods].count(name) == 1


def test_a_pod_gone_with_its_node_is_rebuilt_from_the_service(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "evaluator-0")
    original = copy.deepcopy(api.pod(name))
    api.vanish(name)
    gone = launcher.statuses(handle)["evaluator-0"]
    assert gone.state is RoleState.FAILED and "gone" in gone.detail
    assert gone.end is not None and gone.end.ending is Ending.CRASHED
    launcher.apply(handle, RestartRole(role="evaluator-0"))
    assert api.pod(name)["spec"] == original["spec"]


def test_relaunch_waits_until_the_old_pod_is_deleted(clock: Clock) -> None:
    api = FakeKubeApi(clock=clock, linger=3)
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "worker-1")
    api.exit(name, 143)
    start = clock.now
    launcher.apply(handle, RestartRole(role="worker-1"))
    assert clock.now > start  # it slept while the pod terminated
    assert "deletionTimestamp" not in api.pod(name)["metadata"]


def test_read_log_streams_whole_lines_and_starts_over_on_a_new_pod(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    name = pod_of(handle, "chief-0")
    api.write_log(name, "step 1\nstep 2\nste")
    text, offset = launcher.read_log(handle, "chief-0")
    assert (text, offset) == ("step 1\nstep 2\n", 14)
    assert launcher.read_log(handle, "chief-0", offset) == ("", 14)
    api.write_log(name, "p 3\n")
    assert launcher.read_log(handle, "chief-0", offset) == ("step 3\n", 21)
    api.exit(name, 137)
    launcher.apply(handle, RestartRole(role="chief-0"))
    api.write_log(name, "resumed\n")
    assert launcher.read_log(handle, "chief-0", 21) == ("resumed\n", 8)


def test_statuses_of_every_role_cost_one_request(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    api.start(pod_of(handle, "chief-0"))
    api.vanish(pod_of(handle, "ps-0"))
    api.calls.clear()
    statuses = launcher.statuses(handle)
    assert len(api.calls) <= 1  # reads are not all recorded; none is per role
    assert list(statuses) == list(ROLES)
    assert statuses["chief-0"].state is RoleState.RUNNING
    assert statuses["worker-0"].state is RoleState.PENDING
    assert statuses["ps-0"].state is RoleState.FAILED and "gone" in statuses["ps-0"].detail


def test_a_pod_never_scheduled_never_started(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    clock.advance(Timeouts().scheduling_secs + 1)
    status = launcher.statuses(handle)["worker-0"]
    assert status.end is not None and status.end.ending is Ending.NOT_STARTED


def test_relaunch_job_recreates_every_pod_behind_the_same_service(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    specs = {role: copy.deepcopy(api.pod(pod_of(handle, role))["spec"]) for role in ROLES}
    api.exit(pod_of(handle, "chief-0"), 137)
    launcher.apply(handle, RestartJob())
    for role in ROLES:
        pod = api.pod(pod_of(handle, role))
        assert pod["metadata"]["labels"]["tfdist.io/try"] == "2"
        assert pod["spec"] == specs[role]
    assert len(api.services) == 1
    assert all(s.state is RoleState.PENDING for s in launcher.statuses(handle).values())


# -- stopping and finding -------------------------------------------------------------------
def test_stop_deletes_every_pod_and_the_service_of_the_launch_only(
    api: FakeKubeApi, clock: Clock
) -> None:
    launcher, handle = launch(api, clock)
    _, other = launch(api, clock, scope="nightly/run-2/train_and_evaluate")
    api.exit(pod_of(handle, "evaluator-0"), 0)  # finished pods go too
    launcher.stop(handle)
    left = {name for _, name in api.pods}
    assert left == {pod_of(other, role) for role in ROLES}
    assert [name for _, name in api.services] == [other.job_id.split("/")[1]]


def test_stop_of_some_roles_deletes_just_their_pods(api: FakeKubeApi, clock: Clock) -> None:
    launcher, handle = launch(api, clock)
    launcher.stop(handle, ["worker-1"])
    assert pod_of(handle, "worker-1") not in {name for _, name in api.pods}
    assert len(api.pods) == 4 and len(api.services) == 1


def test_handles_lists_the_launches_of_a_scope_oldest_first(api: FakeKubeApi, clock: Clock) -> None:
    _, first = launch(api, clock, launch_id="try1")
    clock.advance(60)
    _, second = launch(api, clock, launch_id="try2")
    launch(api, clock, scope="nightly/run-2/train_and_evaluate")
    assert make_launcher(api, clock, launch_id="new").handles(SCOPE) == [first, second]
    api.services.clear()  # a launch whose Service is gone is still found by its pods
    assert make_launcher(api, clock).handles(SCOPE) == [first, second]


def test_pod_status_reads_api_shaped_pods() -> None:
    """As `ProviderKubeApi` returns them: camelCase, `+00:00` timestamps."""
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2027-01-15T08:00:00+00:00"},
        "spec": {"nodeName": "n1", "containers": [{"name": "tensorflow", "image": "i"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": "2027-01-15T08:10:00+00:00",
                },
            ],
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "state": {
                        "waiting": {"reason": "ContainerCreating"},
                        "running": None,
                        "terminated": None,
                    },
                }
            ],
        },
    }
    scheduled = pod_status("p", pod, _epoch("2027-01-15T08:19:59+00:00"), Timeouts())
    assert (scheduled.state, scheduled.detail) == (RoleState.PENDING, "on n1: ContainerCreating")
    late = pod_status("p", pod, _epoch("2027-01-15T08:20:01+00:00"), Timeouts())
    assert late.state is RoleState.FAILED and "within 600 s" in late.detail


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# -- the role tasks on this backend ----------------------------------------------------------
@pytest.fixture
def backend(api: FakeKubeApi, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A `KubernetesBackend`, as a DAG passes it to its tasks, whose API is the fake."""
    from tfdist_airflow.backends import KubernetesBackend

    monkeypatch.setattr(KubernetesBackend, "api", lambda self: api)
    checked: list[str] = []
    monkeypatch.setattr(
        "tfdist_airflow.roles.check_writable", lambda path, *_, **__: checked.append(path)
    )
    monkeypatch.setattr(
        "tfdist_airflow.roles.claim_model_dir", lambda _, spec: checked.append(spec.model_dir)
    )
    chosen = KubernetesBackend(namespace="ml", image="trainer:1", placement=TARGET.placement)
    return chosen.model_dump(mode="json")


def run_launch(backend: dict[str, Any], model_dir_base: str) -> dict[str, Any]:
    """The launch task, its gs:// preflight recorded (see the module docstring)."""
    from tfdist_airflow.roles import LaunchRolesOperator

    operator = LaunchRolesOperator(
        task_id="launch",
        job=SPEC.model_dump(mode="json"),
        backend=backend,
        group_id="train_and_evaluate",
        model_dir_base=model_dir_base,
    )
    ctx = context()
    operator.execute(ctx)
    return launched(ctx)


def watch(backend: dict[str, Any], role: str) -> Any:
    from tfdist_airflow.roles import WatchRoleOperator

    return WatchRoleOperator(task_id="watch", role=role, launch_task_id="launch", backend=backend)


def test_the_launch_task_starts_a_gang_and_its_retry_reattaches_to_it(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    first = run_launch(backend, BASE)
    assert JobSpec.model_validate(first["spec"]).model_dir == f"{BASE}/nightly/run-1"
    second = run_launch(backend, BASE)
    old, new = (JobHandle.model_validate(pushed["handle"]) for pushed in (first, second))
    assert old == new
    names = {name for _, name in api.pods}
    assert names == {f"{new.job_id.split('/')[1]}-{role}" for role in ROLES}
    assert [name for _, name in api.services] == [new.job_id.split("/")[1]]


def test_a_watch_retry_reattaches_to_the_running_pod(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    pushed = run_launch(backend, BASE)
    handle = JobHandle.model_validate(pushed["handle"])
    api.start(pod_of(handle, "chief-0"))
    api.calls.clear()
    with pytest.raises(TaskDeferred):
        watch(backend, "chief-0").execute(context(pushed, try_number=2))
    assert [verb for verb, _ in api.calls if verb.startswith(("create", "delete"))] == []


def test_a_watch_retry_recreates_a_preempted_worker(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    pushed = run_launch(backend, BASE)
    handle = JobHandle.model_validate(pushed["handle"])
    name = pod_of(handle, "worker-1")
    api.start(name)
    api.preempt(name)
    api.calls.clear()
    with pytest.raises(TaskDeferred):  # recreated, then followed again
        watch(backend, "worker-1").execute(context(pushed, try_number=2))
    assert api.calls == [("delete_pod", name), ("create_pod", name)]


def test_a_chief_that_failed_on_its_own_fails_its_watch_at_once(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from tfdist_airflow.backends import connect

    pushed = run_launch(backend, BASE)
    name = pod_of(JobHandle.model_validate(pushed["handle"]), "chief-0")
    api.start(name)
    api.write_log(name, "Traceback (most recent call last):\nValueError: bad input\n")
    api.exit(name, 1)
    with pytest.raises(TaskDeferred):  # settling: a crash that caused it may still show
        watch(backend, "chief-0").execute(context(pushed))
    handle = JobHandle.model_validate(pushed["handle"])
    with connect(backend).supervision(handle) as record:  # as if the settling time passed
        record.state = record.state.model_copy(update={"failure_seen_at": 0.0})
    api.calls.clear()
    with pytest.raises(AirflowFailException) as failed:  # no retry, whatever `retries` says
        watch(backend, "chief-0").execute(context(pushed))
    assert str(failed.value) == (
        "chief-0 failed with exit code 1: Error: a failure of the program itself, which no "
        "restart fixes\nthe last lines of chief-0's log:\nTraceback (most recent call last):\n"
        "ValueError: bad input"
    )
    assert not [call for call in api.calls if call[0] == "create_pod"]  # nothing recreated
    deleted = sorted(name for verb, name in api.calls if verb == "delete_pod")
    assert deleted == sorted(  # the job failed: its other roles were stopped
        pod_of(handle, role) for role in ("worker-0", "worker-1", "ps-0", "evaluator-0")
    )


def test_a_killed_watch_task_leaves_no_pod_of_its_role(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    pushed = run_launch(backend, BASE)
    handle = JobHandle.model_validate(pushed["handle"])
    task = watch(backend, "worker-0")
    with pytest.raises(TaskDeferred):
        task.execute(context(pushed))
    task.on_kill()
    assert pod_of(handle, "worker-0") not in {name for _, name in api.pods}


def test_teardown_deletes_every_pod_and_the_service(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from tfdist_airflow.roles import StopRolesOperator

    pushed = run_launch(backend, BASE)
    handle = JobHandle.model_validate(pushed["handle"])
    api.start(pod_of(handle, "chief-0"))
    api.exit(pod_of(handle, "evaluator-0"), 0)
    stop = StopRolesOperator(
        task_id="stop",
        backend=backend,
        group_id="train_and_evaluate",
        launch_task_id="train_and_evaluate.launch",
    )
    with pytest.raises(AirflowFailException, match="did not finish: chief-0, worker-0, ") as e:
        stop.execute(context(pushed))
    assert "evaluator-0" not in str(e.value)  # it had succeeded
    assert api.pods == {} and api.services == {}


def test_backend_from_dict_dispatches_on_kind() -> None:
    from tfdist_airflow.backends import KubernetesBackend, LocalBackend, backend_from_dict

    assert backend_from_dict({}) == LocalBackend()
    assert backend_from_dict({"kind": "local", "run_root": "/r"}) == LocalBackend(run_root="/r")
    k8s = KubernetesBackend(image="trainer:1", namespace="ml", placement=TARGET.placement)
    assert backend_from_dict(k8s.model_dump(mode="json")) == k8s
    with pytest.raises(
        ValueError, match="kind: unknown backend kind 'slurm'; use one of 'local', 'kubernetes'"
    ):
        backend_from_dict({"kind": "slurm"})
    with pytest.raises(ValueError, match="namespace name"):
        KubernetesBackend(image="trainer:1", namespace="Team A")


def test_the_trigger_shows_why_a_pod_waits_then_fires_when_it_ends(
    api: FakeKubeApi, backend: dict[str, Any], tmp_path: Path
) -> None:
    import asyncio

    from structlog.testing import capture_logs

    from tfdist.supervisor import Supervised
    from tfdist_airflow.triggers import RoleExitTrigger

    pushed = run_launch(backend, BASE)
    handle = JobHandle.model_validate(pushed["handle"])
    name = pod_of(handle, "chief-0")
    why = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    steps = iter(
        [
            lambda: api.unschedulable(name, why),
            lambda: None,  # the same reason again is not repeated
            lambda: (api.start(name), api.write_log(name, "step 400\n")),
            lambda: api.exit(name, 0),  # later lines: read by the resumed task from the offset
        ]
    )
    read = api.list_pods

    def list_pods(namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        next(steps, lambda: None)()  # the cluster moves on between two polls
        return read(namespace, labels)

    api.list_pods = list_pods  # type: ignore[method-assign]
    trigger = RoleExitTrigger(
        backend=backend,
        handle=pushed["handle"],
        role="chief-0",
        job=Supervised.of(SPEC, handle.roles).model_dump(mode="json"),
        poll_interval=0,
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    with capture_logs() as logs:
        payload = asyncio.run(first_event())
    assert set(payload) == {"log_offset"}  # no error
    assert api.pod(name)["status"]["phase"] == "Succeeded"
    lines = [entry["event"] % tuple(entry.get("positional_args", ())) for entry in logs]
    shown = [line for line in lines if line.startswith("[chief-0]")]
    assert shown == [
        f"[chief-0] pending: waiting to be scheduled: Unschedulable: {why}",
        "[chief-0] step 400",
    ]


def test_a_local_model_dir_is_refused_before_any_object_is_created(api: FakeKubeApi) -> None:
    from tfdist.locations import LocationError

    local = SPEC.with_overrides({"model_dir": "/tmp/tfdist/models", "data_dir": "/data"})
    launcher = KubernetesLauncher(api, TARGET)
    with pytest.raises(LocationError) as refused:
        launcher.admit(local)
    fields = [line.split(":")[0] for line in str(refused.value).splitlines()]
    assert fields == ["model_dir", "data_dir"]
    with pytest.raises(LocationError):
        launcher.launch(launcher.plan(local, SCOPE))  # also when not admitted first
    assert [verb for verb, _ in api.calls if verb.startswith("create")] == []
