"""The export step on Kubernetes: a one-off pod of the trainer image, driven by the JobSet
backend against the shipped fake cluster (`FakeJobSetCluster`).

No Kubernetes API server can run here, so the tests play scheduler and kubelet on the
in-memory fake and inject the clock, so timeouts take no time. The launch's JobSet is torn
down before each export, as the step's teardown does in a DAG.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tfdist.backend import JobHandle
from tfdist.kubernetes.jobset_launcher import JobSetLauncher
from tfdist.kubernetes.manifests import Target, build_export_pod
from tfdist.kubernetes.names import SCOPE, export_pod_name
from tfdist.kubernetes.placement import JobPlacement, RolePlacement, SecretKey, parse_placement
from tfdist.spec import JobSpec, SpecError, parse_spec
from tfdist.testing.jobset_cluster import FakeJobSetCluster

SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"SEED": "7"}},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 400},
        "model_dir": "gs://bucket/models/nightly/run-1",
    }
)
SCOPE_PATH = "nightly/run-1/train_and_evaluate"
L4 = {"accelerator": "nvidia-l4", "gpus": 1, "cpu": "4", "memory": "16Gi"}
PLACEMENT = JobPlacement(
    default=RolePlacement(
        service_account="tfdist-trainer",
        node_pool="cpu-pool",
        secret_env={"WANDB_API_KEY": SecretKey(secret="wandb", key="api-key")},
    ),
    chief=RolePlacement(node_pool="gpu-pool", spot=True, **L4),
    worker=RolePlacement(node_pool="gpu-spot-pool", spot=True, **L4),
)
TARGET = Target(namespace="ml", image="trainer:1", placement=PLACEMENT)
CHECKPOINT = f"{SPEC.model_dir}/ckpt-400"
OUT = f"{SPEC.model_dir}/export/400"
ENV = {"SEED": "7", "TFDIST_JOB": SPEC.model_dump_json(), "TF_CPP_MIN_LOG_LEVEL": "2"}
UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


class Clock:
    """Seconds since the epoch, moved on by hand and by the launcher's `sleep`."""

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
def api(clock: Clock) -> FakeJobSetCluster:
    return FakeJobSetCluster(clock=clock)


def make_launcher(api: FakeJobSetCluster, clock: Clock, target: Target = TARGET) -> JobSetLauncher:
    return JobSetLauncher(
        api, target, launch_ids=lambda: "launch1", clock=clock, sleep=clock.advance, poll_secs=5
    )


@pytest.fixture
def trained(api: FakeJobSetCluster, clock: Clock) -> tuple[JobSetLauncher, JobHandle]:
    """A launch whose roles ended and whose JobSet the teardown deleted."""
    launcher = make_launcher(api, clock)
    handle = launcher.launch(launcher.plan(SPEC, SCOPE_PATH))
    launcher.stop(handle)
    assert api.pods == {} and api.objects == {}
    api.calls.clear()
    return launcher, handle


def jobset_of(handle: JobHandle) -> str:
    return handle.job_id.split("/")[1]


def export_pod(handle: JobHandle, target: Target = TARGET) -> dict[str, Any]:
    return build_export_pod(SPEC, jobset_of(handle), handle.launch_id, target, CHECKPOINT, OUT, ENV)


def pod_name_of(handle: JobHandle) -> str:
    return export_pod_name(jobset_of(handle), CHECKPOINT)


def cluster_moves(api: FakeJobSetCluster, steps: list[Callable[[], object]]) -> None:
    """Run the next step before each read of an existing pod: the cluster moves on between
    polls."""
    pending: Iterator[Callable[[], object]] = iter(steps)
    read = api.get_pod

    def get_pod(namespace: str, name: str) -> dict[str, Any] | None:
        if (namespace, name) in api.pods:
            next(pending, lambda: None)()
        return read(namespace, name)

    api.get_pod = get_pod  # type: ignore[method-assign]


def changes(api: FakeJobSetCluster) -> list[tuple[str, str]]:
    return [(verb, name) for verb, name in api.calls if verb.startswith(("create", "delete"))]


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


# -- the manifest ---------------------------------------------------------------------------
def test_the_export_pod_is_valid_and_placed_as_the_chief(
    api: FakeJobSetCluster, clock: Clock
) -> None:
    launcher = make_launcher(api, clock)
    handle = launcher.launch(launcher.plan(SPEC, SCOPE_PATH))
    chief = api.pod(api.current_pod(jobset_of(handle), "chief", 0))
    pod = export_pod(handle)
    kubernetes_validate.validate(pod, "1.30", strict=True)

    assert pod["metadata"]["name"] == f"{jobset_of(handle)}-export-400"
    assert len(pod["metadata"]["name"]) <= 63 and pod["metadata"]["namespace"] == "ml"
    for key in ("serviceAccountName", "nodeSelector", "tolerations", "securityContext"):
        assert pod["spec"][key] == chief["spec"][key], key
    assert pod["spec"]["serviceAccountName"] == "tfdist-trainer"
    assert pod["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "gpu-pool",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-spot": "true",
    }
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {
        "nvidia.com/gpu",
        "cloud.google.com/gke-spot",
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    assert "subdomain" not in pod["spec"]  # not a role: no DNS name

    container, role = pod["spec"]["containers"][0], chief["spec"]["containers"][0]
    for key in ("image", "resources", "securityContext"):
        assert container[key] == role[key], key
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["command"] == [
        "python",
        "-m",
        "tfdist.runtime.export",
        "--checkpoint",
        CHECKPOINT,
        "--out",
        OUT,
    ]
    assert "ports" not in container
    env = env_of(pod)
    assert env["TFDIST_JOB"] == SPEC.model_dump_json() and env["SEED"] == "7"
    assert env["TFDIST_LAUNCH_ID"] == "launch1" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    assert "TF_CONFIG" not in env

    labels = pod["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "tfdist",
        "tfdist.io/job": "digits",
        "tfdist.io/launch": "launch1",
        "tfdist.io/role": "export",
    }
    assert SCOPE not in labels  # the step's teardown and `handles` do not see it
    assert "jobset.sigs.k8s.io/jobset-name" not in labels  # nor does the JobSet's end


def test_a_placement_of_its_own_replaces_the_chiefs(api: FakeJobSetCluster, clock: Clock) -> None:
    cpu = PLACEMENT.model_copy(update={"export": RolePlacement(cpu="2", memory="8Gi")})
    launcher = make_launcher(api, clock)
    handle = launcher.launch(launcher.plan(SPEC, SCOPE_PATH))
    pod = export_pod(handle, TARGET.model_copy(update={"placement": cpu}))
    kubernetes_validate.validate(pod, "1.30", strict=True)
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert "tolerations" not in pod["spec"]
    assert pod["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}}
    assert pod["spec"]["serviceAccountName"] == "tfdist-trainer"  # from `default`


def test_an_export_placement_is_checked_like_a_roles() -> None:
    parsed = parse_placement({"default": {"node_pool": "cpu-pool"}, "export": {"cpu": "2"}})
    assert parsed.for_export() == RolePlacement(node_pool="cpu-pool", cpu="2")
    with pytest.raises(SpecError, match="export: accelerator nvidia-l4 without gpus"):
        parse_placement({"export": {"accelerator": "nvidia-l4"}})


def test_the_export_pod_name_is_stable_per_launch_and_checkpoint() -> None:
    service = "a-very-long-job-name-that-fills-most-of-the-label-ab-0123456789"
    name = export_pod_name(service, "gs://b/m/ckpt-123456")
    assert name.endswith("-0123456789-export-123456") and len(name) <= 63
    assert export_pod_name(service, "gs://b/m/ckpt-123456") == name
    other = export_pod_name("digits-0123456789", "/m/final")
    assert other.startswith("digits-0123456789-export-") and len(other) == 33


# -- running it -----------------------------------------------------------------------------
def test_an_export_streams_its_log_then_deletes_its_pod(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    name = pod_name_of(handle)
    cluster_moves(
        api,
        [
            lambda: api.unschedulable(name, UNSCHEDULABLE),
            lambda: (api.start(name), api.write_log(name, "restored ckpt-400\nexpo")),
            lambda: (api.write_log(name, f"rted step 400 to {OUT}\n"), api.exit(name, 0)),
        ],
    )
    lines: list[str] = []
    launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines == [
        f"created pod {name}",
        f"pod {name} pending: Unschedulable: {UNSCHEDULABLE}",
        "restored ckpt-400",
        f"exported step 400 to {OUT}",
    ]
    assert changes(api) == [("create_pod", name), ("delete_pod", name)]
    assert api.pods == {}


def test_a_failed_export_raises_with_its_exit_code_and_deletes_its_pod(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    name = pod_name_of(handle)
    cluster_moves(
        api,
        [
            lambda: (api.start(name), api.write_log(name, "FileNotFoundError: no checkpoint")),
            lambda: api.exit(name, 2),
        ],
    )
    lines: list[str] = []
    with pytest.raises(RuntimeError, match=rf"pod {name} failed: exit code 2$"):
        launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines[-1] == "FileNotFoundError: no checkpoint"  # the last line, without its newline
    assert changes(api) == [("create_pod", name), ("delete_pod", name)]
    assert api.pods == {}


def test_an_unschedulable_export_fails_after_the_scheduling_timeout(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    name = pod_name_of(handle)
    cluster_moves(api, [lambda: api.unschedulable(name, UNSCHEDULABLE)])
    start = clock()
    launcher.poll_secs = 30
    with pytest.raises(RuntimeError) as raised:
        launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lambda line: None)
    assert str(raised.value) == (
        f"export failed: pod {name} failed: not scheduled within 900 s (scheduling timeout): "
        f"Unschedulable: {UNSCHEDULABLE}"
    )
    assert 900 < clock() - start <= 930
    assert api.pods == {}


def test_an_export_running_too_long_is_stopped(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    name = pod_name_of(handle)
    cluster_moves(api, [lambda: api.start(name)])
    launcher.poll_secs = 60
    with pytest.raises(RuntimeError, match=rf"pod {name} still running after 1800 s"):
        launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lambda line: None)
    assert api.pods == {}


# -- retries --------------------------------------------------------------------------------
def test_a_retry_reattaches_to_the_running_export_pod(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    _, handle = trained
    name = pod_name_of(handle)
    api.create_pod("ml", export_pod(handle))  # by the try before, which then died
    api.start(name)
    api.write_log(name, "restored ckpt-400\n")
    api.calls.clear()
    cluster_moves(
        api,
        [
            lambda: None,
            lambda: None,
            lambda: (api.write_log(name, f"exported step 400 to {OUT}\n"), api.exit(name, 0)),
        ],
    )
    lines: list[str] = []
    make_launcher(api, clock).export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines == [
        f"pod {name} of an earlier try is running; following it",
        "restored ckpt-400",
        f"exported step 400 to {OUT}",
    ]
    assert changes(api) == [("delete_pod", name)]  # no second create


def test_a_retry_after_success_reuses_it(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    name = pod_name_of(handle)
    api.create_pod("ml", export_pod(handle))
    api.start(name)
    api.write_log(name, f"exported step 400 to {OUT}\n")
    api.exit(name, 0)
    api.calls.clear()
    lines: list[str] = []
    launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines == [
        f"pod {name} of an earlier try succeeded; taking its result",
        f"exported step 400 to {OUT}",
    ]
    assert changes(api) == [("delete_pod", name)]
    assert api.pods == {}


def test_a_retry_replaces_a_failed_export_pod(
    clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    _, handle = trained
    api = FakeJobSetCluster(clock=clock, linger=2)  # the old pod takes a while to go
    launcher = make_launcher(api, clock)
    name = pod_name_of(handle)
    api.create_pod("ml", export_pod(handle))
    api.preempt(name)
    api.calls.clear()
    lines: list[str] = []
    launcher.poll_secs = 300
    with pytest.raises(RuntimeError):  # the new pod is never scheduled here
        launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines[:2] == [
        f"pod {name} of an earlier try ended (preempted: Terminated: Pod was terminated in "
        "response to imminent node shutdown.); starting it again",
        f"created pod {name}",
    ]
    assert changes(api)[:2] == [("delete_pod", name), ("create_pod", name)]


def test_an_export_pod_running_other_arguments_is_not_taken_over(
    api: FakeJobSetCluster, clock: Clock, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    launcher, handle = trained
    other = build_export_pod(
        SPEC, jobset_of(handle), "launch1", TARGET, CHECKPOINT, "/elsewhere", ENV
    )
    api.create_pod("ml", other)
    api.start(other["metadata"]["name"])
    api.calls.clear()
    with pytest.raises(RuntimeError, match="still running another command"):
        launcher.export(handle, SPEC, CHECKPOINT, OUT, ENV, lambda line: None)
    assert changes(api) == []


def test_the_steps_teardown_leaves_a_running_export_alone(
    api: FakeJobSetCluster, clock: Clock
) -> None:
    launcher = make_launcher(api, clock)
    handle = launcher.launch(launcher.plan(SPEC, SCOPE_PATH))
    api.create_pod("ml", export_pod(handle))
    api.start(pod_name_of(handle))
    assert [h.roles for h in launcher.handles(SCOPE_PATH)] == [
        ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")
    ]
    launcher.stop(handle)
    assert [name for _, name in api.pods] == [pod_name_of(handle)]
    assert api.objects == {}  # the JobSet is gone, the export pod is not


# -- the backends ---------------------------------------------------------------------------
@pytest.fixture
def k8s_backend(api: FakeJobSetCluster, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The backend as a task builds it from its dict, on the fake API and clock."""
    from tfdist_airflow.backends import JobSetBackend, backend_from_dict

    def connect(self: JobSetBackend) -> JobSetLauncher:
        return JobSetLauncher(
            api, self.target(), timeouts=self.timeouts, clock=clock, sleep=clock.advance
        )

    monkeypatch.setattr(JobSetBackend, "connect", connect)
    chosen = JobSetBackend(namespace="ml", image="trainer:1", placement=PLACEMENT)
    return backend_from_dict(chosen.model_dump(mode="json")).connect()


def test_the_jobset_backend_exports_in_a_pod(
    api: FakeJobSetCluster, k8s_backend: Any, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    _, handle = trained
    name = pod_name_of(handle)
    cluster_moves(
        api, [lambda: (api.start(name), api.write_log(name, "ok\n")), lambda: api.exit(name, 0)]
    )
    lines: list[str] = []
    k8s_backend.export(handle, SPEC, CHECKPOINT, OUT, ENV, lines.append)
    assert lines == [f"created pod {name}", "ok"]
    assert changes(api) == [("create_pod", name), ("delete_pod", name)]


def test_the_jobset_backend_names_a_failed_export(
    api: FakeJobSetCluster, k8s_backend: Any, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    _, handle = trained
    name = pod_name_of(handle)
    cluster_moves(api, [lambda: api.start(name), lambda: api.exit(name, 1)])
    with pytest.raises(RuntimeError, match=rf"^export failed: pod {name} failed: exit code 1$"):
        k8s_backend.export(handle, SPEC, CHECKPOINT, OUT, ENV, lambda line: None)
    assert api.pods == {}


def test_a_killed_export_task_deletes_the_pod(
    api: FakeJobSetCluster, k8s_backend: Any, trained: tuple[JobSetLauncher, JobHandle]
) -> None:
    _, handle = trained
    name = pod_name_of(handle)
    # on_kill runs while execute still polls: the pod is gone at the next poll.
    cluster_moves(
        api, [lambda: api.start(name), lambda: k8s_backend.stop_export(handle, CHECKPOINT)]
    )
    with pytest.raises(RuntimeError, match="its pod is gone"):
        k8s_backend.export(handle, SPEC, CHECKPOINT, OUT, ENV, lambda line: None)
    assert api.pods == {}


def test_the_local_backend_fails_an_export_without_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs `python -m tfdist.runtime.export` for real; without `TFDIST_JOB` it exits 2."""
    from tfdist_airflow.backends import LocalBackend

    monkeypatch.delenv("TFDIST_JOB", raising=False)
    backend = LocalBackend(run_root=str(tmp_path), python=sys.executable).connect()
    handle = JobHandle(backend="local", job_id=str(tmp_path), launch_id="l1", roles=("chief-0",))
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="export failed with exit code 2"):
        backend.export(
            handle,
            SPEC,
            CHECKPOINT,
            str(tmp_path / "out"),
            {"TF_CPP_MIN_LOG_LEVEL": "2"},
            lines.append,
        )
    assert lines == ["TFDIST_JOB is not set: export runs with the job's spec"]
    assert not (tmp_path / "out").exists()


def test_tfdist_job_defaults_to_the_spec() -> None:
    pod = build_export_pod(SPEC, "digits-0123456789", "l1", TARGET, CHECKPOINT, OUT, {})
    assert JobSpec.model_validate_json(env_of(pod)["TFDIST_JOB"]) == SPEC
