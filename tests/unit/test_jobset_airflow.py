"""The Airflow tasks and the watch trigger over the JobSet backend, as a DAG configures it.

No Kubernetes API server, JobSet controller or Kueue can run here: `JobSetBackend.api` is
replaced by the shipped `FakeJobSetCluster` (JobSet, Job and Kueue controllers written from
their documentation); the operators and `RoleExitTrigger` are the real ones. The gs://
preflight and fingerprint are recorded rather than run (no bucket here; they have their own
tests against the GCS emulator).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from task_context import context, launched

from tfdist.backend import JobHandle
from tfdist.kubernetes.kueue import Kueue
from tfdist.spec import parse_spec
from tfdist.testing.jobset_cluster import FakeJobSetCluster

SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 400},
        "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 2},
        "model_dir": "gs://bucket/models/nightly/run-1",
    }
)


@pytest.fixture
def api() -> FakeJobSetCluster:
    return FakeJobSetCluster()


@pytest.fixture
def backend(api: FakeJobSetCluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A `JobSetBackend` as a DAG passes it to its tasks, whose API is the fake cluster."""
    from tfdist_airflow import backends

    monkeypatch.setattr(backends.JobSetBackend, "api", lambda self: api)
    monkeypatch.setattr("tfdist_airflow.roles.check_writable", lambda *_, **__: None)
    monkeypatch.setattr("tfdist_airflow.roles.claim_model_dir", lambda *_: None)
    config = backends.JobSetBackend(
        namespace="ml",
        image="trainer:1",
        kueue=Kueue(queue_name="gpu-queue"),
        shared_read_secs=0,  # every poll reads anew: the cluster moves on between polls
    )
    return config.model_dump(mode="json")


def run_launch(backend: dict[str, Any]) -> dict[str, Any]:
    from tfdist_airflow.roles import LaunchRolesOperator

    operator = LaunchRolesOperator(
        task_id="launch",
        job=SPEC.model_dump(mode="json"),
        backend=backend,
        group_id="train_and_evaluate",
        model_dir_base="gs://bucket/models",
    )
    ctx = context()
    operator.execute(ctx)
    return launched(ctx)


def pod(api: FakeJobSetCluster, handle: JobHandle, role: str) -> str:
    kind, _, index = role.rpartition("-")
    return api.current_pod(handle.job_id.split("/")[1], kind, int(index))


def test_a_retried_launch_task_never_leaves_two_gangs(
    api: FakeJobSetCluster, backend: dict[str, Any]
) -> None:
    """A retry reattaches to the JobSet that still runs; once that one was stopped (its run
    marked failed), a retry replaces it."""
    from tfdist_airflow.backends import connect

    first = JobHandle.model_validate(run_launch(backend)["handle"])
    again = JobHandle.model_validate(run_launch(backend)["handle"])
    assert again == first
    assert [key[2] for key in api.objects if key[0] == "jobsets"] == [first.job_id.split("/")[1]]

    connect(backend).stop(first)
    second = JobHandle.model_validate(run_launch(backend)["handle"])
    assert first.job_id != second.job_id
    assert [key[2] for key in api.objects if key[0] == "jobsets"] == [second.job_id.split("/")[1]]


def test_the_watch_trigger_logs_why_it_waits_and_follows_the_chief_across_a_restart(
    api: FakeJobSetCluster,
    backend: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Also keeps the launch's wait in Kueue in the model directory, once per change of the
    queue's answer, for the Training view."""
    from structlog.testing import capture_logs

    from tfdist.records import Admission, admission_name
    from tfdist.storage import LocalStorage
    from tfdist.supervisor import Supervised
    from tfdist_airflow.triggers import RoleExitTrigger

    pushed = run_launch(backend)
    handle = JobHandle.model_validate(pushed["handle"])
    name = handle.job_id.split("/")[1]

    def start_all() -> None:
        for role in handle.roles:
            api.start(pod(api, handle, role))

    def oom() -> None:
        api.pause()  # this poll sees the chief's end before the controllers react
        api.oom(pod(api, handle, "chief-0"))

    steps: Iterator[Callable[[], object]] = iter(
        [
            lambda: api.pending(
                name,
                "couldn't assign flavors to pod set chief: insufficient "
                "unused quota for nvidia.com/gpu in flavor l4, 1 more needed",
            ),
            lambda: api.admit(name),
            lambda: (start_all(), api.write_log(pod(api, handle, "chief-0"), "step 100\n")),
            oom,
            api.resume,
            lambda: (start_all(), api.write_log(pod(api, handle, "chief-0"), "step 200\n")),
            lambda: api.exit(pod(api, handle, "chief-0"), 0),
            lambda: api.exit(pod(api, handle, "evaluator-0"), 0),
        ]
    )
    trigger = RoleExitTrigger(
        backend=backend,
        handle=pushed["handle"],
        role="chief-0",
        job=Supervised.of(SPEC, handle.roles, engine_runs_policy=True).model_dump(mode="json"),
        poll_interval=0,
        model_dir=str(tmp_path),
    )
    pause = asyncio.sleep
    written: list[Admission] = []
    write = LocalStorage.write_text

    def keep(self: LocalStorage, path: str, text: str) -> None:
        written.append(Admission.model_validate_json(text))
        write(self, path, text)

    monkeypatch.setattr(LocalStorage, "write_text", keep)

    async def between_polls(secs: float) -> None:
        next(steps, lambda: None)()  # the cluster moves on between two polls
        await pause(0)

    monkeypatch.setattr("tfdist_airflow.triggers.asyncio.sleep", between_polls)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    with capture_logs() as logs:
        payload = asyncio.run(first_event())
    assert set(payload) == {"log_offset"}  # no error
    new = pod(api, handle, "chief-0")
    assert api.pods[("ml", new)]["status"]["phase"] == "Succeeded"
    lines = [entry["event"] % tuple(entry.get("positional_args", ())) for entry in logs]
    assert [line for line in lines if line.startswith("[chief-0]")] == [
        "[chief-0] pending: queued in Kueue (queue gpu-queue: 1st of 1 in it, 1st in its cluster "
        "queue; waiting under a minute): Pending: waiting for the scheduler",
        "[chief-0] pending: queued in Kueue (queue gpu-queue: 1st of 1 in it, 1st in its cluster "
        "queue; waiting under a minute): Pending: couldn't assign flavors to pod set chief: "
        "insufficient unused quota for nvidia.com/gpu in flavor l4, 1 more needed",
        "[chief-0] pending: pod pending: waiting for a node",
        "[chief-0] step 100",
        "[chief-0] pending: restarting: chief-0 ran out of memory (OOM-killed, exit code 137); "
        "restarting every role from the last checkpoint (restart 1 of 2)",
        "[chief-0] pending: pod pending: waiting for a node (job restart 1, 1 of 2 counted, "
        "after chief-0 failed)",
        f"[chief-0] --- chief-0: following pod {new} (job restart 1, run 1 of its Job) ---",
        "[chief-0] step 200",
        "[chief-0] running: job restart 1, 1 of 2 counted",
    ]
    assert [(w.detail.split("): ", 1)[-1], w.waiting) for w in written] == [
        ("Pending: waiting for the scheduler", True),
        (
            "Pending: couldn't assign flavors to pod set chief: insufficient unused quota for "
            "nvidia.com/gpu in flavor l4, 1 more needed",
            True,
        ),
        ("", False),  # once: the record does not change while the job runs and restarts
    ]
    kept = Admission.model_validate_json(
        Path(admission_name(str(tmp_path), handle.launch_id)).read_text()
    )
    assert kept == written[-1] and kept.admitted_at is not None
    assert kept.queued_at <= kept.admitted_at


def test_the_teardown_deletes_the_jobset_and_its_pods(
    api: FakeJobSetCluster, backend: dict[str, Any]
) -> None:
    from tfdist_airflow.roles import StopRolesOperator

    handle = JobHandle.model_validate(run_launch(backend)["handle"])
    api.admit(handle.job_id.split("/")[1])
    for role in handle.roles:
        api.start(pod(api, handle, role))
    stop = StopRolesOperator(task_id="stop", backend=backend, group_id="train_and_evaluate")
    with pytest.raises(AirflowFailException, match="still running, stopped now"):
        stop.execute(context())  # the run fails: its training did not finish
    assert api.objects == {} and api.pods == {} and api.jobs == {}
