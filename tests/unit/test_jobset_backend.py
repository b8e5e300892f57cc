"""The JobSet backend, scenario by scenario, on the shipped fake JobSet, Job and Kueue controllers.

No Kubernetes API server, JobSet controller or Kueue can run here: `FakeJobSetCluster` keeps
the objects in memory and does what those controllers document (see its module docstring);
the tests play the kubelet (pods start, exit, are OOM-killed or preempted) and Kueue's
scheduler (quota, admission checks, admission). `JobSetLauncher` only ever talks to it through
the `KubeApi` calls a real cluster would get.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tfdist.backend import JobHandle, LaunchRefused, RoleState
from tfdist.kubernetes.jobset import (
    JobSetOptions,
)
from tfdist.kubernetes.jobset_launcher import JobSetLauncher, Snapshots
from tfdist.kubernetes.kueue import Kueue
from tfdist.kubernetes.logs import LogCursor
from tfdist.kubernetes.manifests import Target
from tfdist.locations import LocationError
from tfdist.spec import JobSpec, parse_spec
from tfdist.testing.jobset_cluster import FakeJobSetCluster

SCOPE = "nightly/run-1/train_and_evaluate"
PS = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 10},
        "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 2},
        "model_dir": "gs://bucket/m",
    }
)
ALL_REDUCE = PS.with_overrides({"cluster": {"worker": 2, "evaluator": 1}})


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.now += secs


@pytest.fixture
def api() -> FakeJobSetCluster:
    return FakeJobSetCluster(clock=Clock())  # the time a launcher's `Clock` starts at


def launcher(
    api: FakeJobSetCluster, options: JobSetOptions | None = None, clock: Clock | None = None
) -> JobSetLauncher:
    clock = clock or Clock()
    ids = iter(f"launch{i}" for i in range(1, 100))
    return JobSetLauncher(
        api,
        Target(namespace="ml", image="trainer:1"),
        options,
        snapshots=Snapshots(max_age_secs=0),
        launch_ids=lambda: next(ids),
        clock=clock,
        sleep=clock.sleep,
    )


def launch(
    api: FakeJobSetCluster, spec: JobSpec = PS, options: JobSetOptions | None = None
) -> tuple[JobSetLauncher, JobHandle]:
    backend = launcher(api, options)
    return backend, backend.launch(backend.plan(spec, SCOPE))


def pod(api: FakeJobSetCluster, handle: JobHandle, role: str) -> str:
    kind, _, index = role.rpartition("-")
    return api.current_pod(handle.job_id.split("/")[1], kind, int(index))


def start_all(api: FakeJobSetCluster, handle: JobHandle) -> None:
    for role in handle.roles:
        api.start(pod(api, handle, role))


def detail(backend: JobSetLauncher, handle: JobHandle, role: str) -> tuple[RoleState, str]:
    status = backend.statuses(handle)[role]
    return status.state, status.detail


def test_launch_creates_one_jobset_and_a_repeated_launch_creates_no_second(
    api: FakeJobSetCluster,
) -> None:
    backend = launcher(api)
    job = backend.plan(PS, SCOPE)
    handle = backend.launch(job)
    assert handle.backend == "jobset" and handle.job_id.startswith("ml/digits-")
    assert handle.roles == ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")
    assert backend.launch(job) == handle  # the same launch again: its own JobSet is found
    assert [call for call in api.calls if call[0] == "create_jobsets"] == [
        ("create_jobsets", handle.job_id.split("/")[1])
    ] * 2
    assert len(api.objects) == 1 and len(api.jobs) == 5
    assert backend.handles(SCOPE) == [handle]


def test_admission_delayed_then_granted() -> None:
    """While Kueue holds the Workload the watch says where it stands (Kueue's visibility API:
    behind one job in its LocalQueue and one more from another LocalQueue of the same
    ClusterQueue) and how long it has waited; then why it waits for nodes."""
    clock = Clock()
    api = FakeJobSetCluster(clock=clock)
    gpu = JobSetOptions(kueue=Kueue(queue_name="gpu-queue"))
    for queue, run in (("gpu-queue", "run-0"), ("cpu-queue", "run-9")):  # two jobs ahead
        ahead = launcher(api, JobSetOptions(kueue=Kueue(queue_name=queue)), clock)
        ahead.launch(ahead.plan(PS, f"nightly/{run}/train_and_evaluate"))
    backend = launcher(api, gpu, clock)
    handle = backend.launch(backend.plan(PS, SCOPE))
    name = handle.job_id.split("/")[1]
    clock.now += 12 * 60 + 5
    api.pending(
        name, "couldn't assign flavors to pod set chief: insufficient quota for nvidia.com/gpu"
    )
    assert detail(backend, handle, "chief-0") == (
        RoleState.PENDING,
        "queued in Kueue (queue gpu-queue: 2nd of 2 in it, 3rd in its cluster queue; waiting "
        "12 min): Pending: couldn't assign flavors to pod set chief: insufficient quota for "
        "nvidia.com/gpu",
    )
    assert api.pods == {}
    api.reserve_quota(name, "cluster-queue", {"dws-prov": "waiting for capacity"})
    assert detail(backend, handle, "worker-0")[1] == (
        "admitted to quota in cluster queue cluster-queue, waiting for nodes "
        "(admission checks: dws-prov Pending: waiting for capacity)"
    )
    api.admit(name)
    assert len(api.pods) == 5  # every pod at once
    start_all(api, handle)
    assert {s.state for s in backend.statuses(handle).values()} == {RoleState.RUNNING}


def test_an_evaluator_crash_restarts_it_alone_and_its_log_follows_the_new_pod(
    api: FakeJobSetCluster,
) -> None:
    backend, handle = launch(api)
    start_all(api, handle)
    others = {role: pod(api, handle, role) for role in handle.roles if role != "evaluator-0"}
    first = pod(api, handle, "evaluator-0")
    api.write_log(first, "evaluated step 100\nevaluated st")
    text, offset = backend.read_log(handle, "evaluator-0")
    assert text == "evaluated step 100\n"
    api.write_log(first, "ep 200\n")
    api.exit(first, 137)
    second = pod(api, handle, "evaluator-0")
    assert second != first
    assert {role: pod(api, handle, role) for role in others} == others  # nobody else restarted
    assert detail(backend, handle, "evaluator-0") == (
        RoleState.PENDING,
        "pod pending: waiting for a node (restart 1 of evaluator-0 alone, 1 of 2 counted, "
        "after killed by SIGKILL (exit code 137))",
    )
    api.start(second)
    api.write_log(second, "restored checkpoint 200\n")
    text, offset = backend.read_log(handle, "evaluator-0", offset)
    assert text == "evaluated step 200\n"  # the rest of the old pod first
    text, offset = backend.read_log(handle, "evaluator-0", offset)
    assert text == (
        f"--- evaluator-0: following pod {second} (run 2 of its Job) ---\nrestored checkpoint 200\n"
    )
    assert backend.read_log(handle, "evaluator-0", offset) == ("", offset)
    cursor = LogCursor.decode(offset)  # the second pod of the first attempt, after one line
    assert (cursor.attempt, cursor.ordinal, cursor.seen) == (0, 1, 1) and cursor.stamp > 0


@pytest.mark.parametrize(
    ("spec", "restarts"),
    [(PS, 0), (ALL_REDUCE, 1)],
    ids=["ps-worker-restarts-alone", "all-reduce-worker-restarts-the-job"],
)
def test_a_preempted_worker_is_restarted_without_counting(
    api: FakeJobSetCluster, spec: JobSpec, restarts: int
) -> None:
    backend, handle = launch(api, spec)
    start_all(api, handle)
    api.preempt(pod(api, handle, "worker-1"))
    status = api.jobset(handle.job_id.split("/")[1])["status"]
    assert (status["restarts"], status["restartsCountTowardsMax"]) == (restarts, 0)
    job = api.jobs[("ml", f"{handle.job_id.split('/')[1]}-worker-1")]
    assert job["status"]["failed"] == 0  # Ignored by the pod failure policy: not counted
    assert backend.statuses(handle)["worker-1"].state is RoleState.PENDING


def test_a_chief_out_of_memory_restarts_the_job_and_says_out_of_memory(
    api: FakeJobSetCluster,
) -> None:
    backend, handle = launch(api)
    start_all(api, handle)
    chief = pod(api, handle, "chief-0")
    api.write_log(chief, "step 300\n")
    text, offset = backend.read_log(handle, "chief-0")
    api.oom(chief)
    assert detail(backend, handle, "chief-0") == (
        RoleState.PENDING,
        "pod pending: waiting for a node (job restart 1, 1 of 2 counted, after chief-0 failed)",
    )
    assert chief not in {p["metadata"]["name"] for p in api.pods.values()}  # old pods gone
    new = pod(api, handle, "chief-0")
    api.start(new)
    api.write_log(new, "restored checkpoint 300\n")
    assert backend.read_log(handle, "chief-0", offset)[0] == ""  # the old pod is gone
    text, _ = backend.read_log(handle, "chief-0", LogCursor(1, 0).encode())
    assert text == (
        f"--- chief-0: following pod {new} (job restart 1, run 1 of its Job) ---\n"
        "restored checkpoint 300\n"
    )
    for _ in range(2):
        start_all(api, handle)
        api.oom(pod(api, handle, "chief-0"))
    failed = backend.statuses(handle)["chief-0"]
    assert failed.state is RoleState.FAILED
    assert failed.detail == (
        "chief-0 ran out of memory (OOM-killed, exit code 137); all 2 restarts used "
        "(restart_policy.max_job_restarts: 2)"
    )


def test_a_program_error_fails_the_job_at_once(api: FakeJobSetCluster) -> None:
    backend, handle = launch(api)
    start_all(api, handle)
    api.exit(pod(api, handle, "ps-0"), 2)
    statuses = backend.statuses(handle)
    assert statuses["ps-0"].state is RoleState.FAILED and statuses["ps-0"].exit_code == 2
    assert statuses["ps-0"].detail == (
        "ps-0 failed with exit code 2: a failure of the program itself, which no restart fixes"
    )
    assert all(s.state is RoleState.FAILED for s in statuses.values())
    assert api.jobset(handle.job_id.split("/")[1])["status"]["restarts"] == 0


def test_a_restarted_triggerer_resumes_the_watch_without_a_second_gang(
    api: FakeJobSetCluster,
) -> None:
    backend, handle = launch(api)
    start_all(api, handle)
    chief = pod(api, handle, "chief-0")
    api.write_log(chief, "step 1\nstep 2\n")
    _, offset = backend.read_log(handle, "chief-0")
    api.write_log(chief, "step 3\n")
    resumed = launcher(api)  # a new process: its own launcher and snapshots
    text, after = resumed.read_log(handle, "chief-0", offset)
    assert text == "step 3\n"  # no line twice, none lost
    assert resumed.read_log(handle, "chief-0", after) == ("", after)
    assert resumed.statuses(handle)["chief-0"].state is RoleState.RUNNING
    assert [c for c in api.calls if c[0] == "create_jobsets"] == [
        ("create_jobsets", chief.split("-chief")[0])
    ]


def test_stop_deletes_the_jobset_in_the_foreground_and_confirms_its_pods_are_gone() -> None:
    api = FakeJobSetCluster(linger=2)  # terminating pods take a few reads to go
    backend, handle = launch(api)
    start_all(api, handle)
    backend.stop(handle)
    assert api.pods == {} and api.objects == {} and api.jobs == {}
    assert ("delete_jobsets", handle.job_id.split("/")[1]) in api.calls
    assert all(
        s.state is RoleState.FAILED and "its JobSet is gone" in s.detail
        for s in backend.statuses(handle).values()
    )
    assert backend.handles(SCOPE) == []


def test_stopping_one_role_deletes_its_pod_and_the_cluster_applies_the_policy(
    api: FakeJobSetCluster,
) -> None:
    """A killed watch task of the evaluator: its pod goes, its Job starts a new one."""
    backend, handle = launch(api)
    start_all(api, handle)
    old = pod(api, handle, "evaluator-0")
    backend.stop(handle, ["evaluator-0"])
    assert old not in {p["metadata"]["name"] for p in api.pods.values()}
    assert pod(api, handle, "evaluator-0") != old
    assert api.jobset(handle.job_id.split("/")[1])["status"]["restarts"] == 0


def test_success_waits_for_the_evaluator_then_ends_every_role(api: FakeJobSetCluster) -> None:
    backend, handle = launch(api)
    start_all(api, handle)
    api.exit(pod(api, handle, "chief-0"), 0)
    states = {role: s.state for role, s in backend.statuses(handle).items()}
    assert states["chief-0"] is RoleState.SUCCEEDED and states["evaluator-0"] is RoleState.RUNNING
    api.exit(pod(api, handle, "evaluator-0"), 0)
    assert {s.state for s in backend.statuses(handle).values()} == {RoleState.SUCCEEDED}


def watch(backend: JobSetLauncher, handle: JobHandle, role: str) -> Iterator[str]:
    """What a watch task logs, poll after poll: new log lines, and why it waits on change."""
    offset, shown = 0, ""
    while True:
        text, offset = backend.read_log(handle, role, offset)
        yield from text.splitlines()
        status = backend.statuses(handle)[role]
        if status.state.finished:
            yield f"{status.state.value}: {status.detail}"
            return
        if status.detail and status.detail != shown:
            shown = status.detail
            yield f"{status.state.value}: {shown}"
        yield ""  # one poll


def test_a_watch_reads_as_a_user_would_want(api: FakeJobSetCluster) -> None:
    backend, handle = launch(api, options=JobSetOptions(kueue=Kueue(queue_name="gpu-queue")))
    name = handle.job_id.split("/")[1]
    lines = watch(backend, handle, "chief-0")
    seen: list[str] = []

    def poll() -> None:
        for line in lines:
            if line == "":
                return
            seen.append(line)

    poll()
    api.admit(name)
    poll()
    start_all(api, handle)
    api.write_log(pod(api, handle, "chief-0"), "step 100, loss 0.9\n")
    poll()
    api.pause()  # the watch polls before the controllers react to the chief's end
    api.oom(pod(api, handle, "chief-0"))
    poll()
    api.resume()
    poll()
    start_all(api, handle)
    api.write_log(pod(api, handle, "chief-0"), "restored step 100\nstep 200, loss 0.5\n")
    poll()
    api.exit(pod(api, handle, "chief-0"), 0)
    api.exit(pod(api, handle, "evaluator-0"), 0)
    poll()
    new = pod(api, handle, "chief-0")
    assert seen == [
        "pending: queued in Kueue (queue gpu-queue: 1st of 1 in it, 1st in its cluster queue; "
        "waiting under a minute): Pending: waiting for the scheduler",
        "pending: pod pending: waiting for a node",
        "step 100, loss 0.9",
        "pending: restarting: chief-0 ran out of memory (OOM-killed, exit code 137); "
        "restarting every role from the last checkpoint (restart 1 of 2)",
        "pending: pod pending: waiting for a node (job restart 1, 1 of 2 counted, after "
        "chief-0 failed)",
        f"--- chief-0: following pod {new} (job restart 1, run 1 of its Job) ---",
        "restored step 100",
        "step 200, loss 0.5",
        "running: job restart 1, 1 of 2 counted",
        "succeeded: ",
    ]


def test_the_teardown_stopping_every_running_role_deletes_the_jobset(
    api: FakeJobSetCluster,
) -> None:
    """The teardown asks to stop every role still running: that is the whole gang, deleted
    at once, not pod by pod (which the controllers would restart)."""
    backend, handle = launch(api)
    start_all(api, handle)
    api.exit(pod(api, handle, "worker-0"), 0)
    running = [r for r, s in backend.statuses(handle).items() if not s.state.finished]
    assert "worker-0" not in running
    backend.stop(handle, running)
    assert api.objects == {} and api.pods == {}
    assert [c for c in api.calls if c[0] == "delete_pod"] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cluster": {"worker": 10_001}}, "cluster.worker: 10001 replicas; a JobSet's pod names"),
        ({"trainer.env.TASK_INDEX": "3"}, "trainer.env: TASK_INDEX is set by the JobSet backend"),
    ],
)
def test_admit_refuses_what_the_jobset_webhook_or_the_pods_would(
    api: FakeJobSetCluster, changes: dict[str, object], message: str
) -> None:
    backend = launcher(api)
    backend.admit(PS)
    with pytest.raises(LaunchRefused, match=message):
        backend.admit(PS.with_overrides(changes))
    assert api.calls == []


@pytest.mark.parametrize("field", ["model_dir", "data_dir"])
def test_admit_refuses_a_local_path_pods_cannot_share(api: FakeJobSetCluster, field: str) -> None:
    backend = launcher(api)
    with pytest.raises(LocationError, match=f"{field}: '/tmp/m' is a local path"):
        backend.admit(PS.with_overrides({field: "/tmp/m"}))
    assert api.calls == []
