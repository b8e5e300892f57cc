"""A role's watch task and its trigger apply the restart policy, on the in-memory backend.

The fake is injected by configuration (`{"kind": "fake", "name": ...}`), as a DAG would name
a real backend; each test moves the roles along itself between two polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from tfdist.fake import FakeBackend
from tfdist.spec import JobSpec, parse_spec
from tfdist_airflow.roles import RoleFailed, WatchRoleOperator, redacted
from tfdist_airflow.runs import WatchPolicy
from tfdist_airflow.triggers import RoleExitTrigger

NAME = "watch-tests"
BACKEND = {"kind": "fake", "name": NAME}


def job(workers: int = 2, ps: int = 1) -> JobSpec:
    return parse_spec(
        {
            "name": "digits",
            "trainer": {"command": ["train"]},
            "cluster": {"worker": workers, "ps": ps, "evaluator": 1},
            "train_spec": {"max_steps": 10},
            "model_dir": "/m",
        }
    )


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    yield FakeBackend.named(NAME)
    FakeBackend.forget(NAME)


def launched(fake: FakeBackend, spec: JobSpec) -> dict[str, Any]:
    handle = fake.launch(fake.plan(spec, "dag/run/group"))
    return {"spec": redacted(spec), "handle": handle.model_dump(mode="json")}


def trigger(pushed: dict[str, Any], role: str, spec: JobSpec) -> RoleExitTrigger:
    return RoleExitTrigger(
        backend=BACKEND,
        handle=pushed["handle"],
        role=role,
        policy=WatchPolicy.of(spec).model_dump(mode="json"),
        poll_interval=0,
    )


def first_event(watcher: RoleExitTrigger, moves: list[Callable[[], None]]) -> dict[str, Any]:
    """The trigger's event, the cluster making one move before each poll."""
    pending = iter(moves)

    async def run() -> dict[str, Any]:
        async for event in watcher.run():
            return dict(event.payload)
        raise AssertionError("no event")

    original = watcher._decide

    async def decide(*args: Any) -> dict[str, Any] | None:
        result = await original(*args)
        next(pending, lambda: None)()
        return result

    watcher._decide = decide  # type: ignore[method-assign]
    return asyncio.run(asyncio.wait_for(run(), timeout=10))


def context(pushed: dict[str, Any]) -> Any:
    ti = SimpleNamespace(xcom_pull=lambda task_ids: pushed, try_number=1)
    return {"dag": SimpleNamespace(dag_id="dag"), "run_id": "run", "ti": ti}


def watch(role: str) -> WatchRoleOperator:
    return WatchRoleOperator(task_id="watch", role=role, launch_task_id="launch", backend=BACKEND)


def test_the_trigger_restarts_a_crashed_ps_worker_alone_and_follows_it(
    fake: FakeBackend,
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    event = first_event(
        trigger(pushed, "worker-1", spec),
        [lambda: fake.exit("worker-1", 137), lambda: None, lambda: fake.exit("worker-1", 0)],
    )
    assert event["status"]["state"] == "succeeded"
    assert event["role_restarts"] == 1
    assert fake.tries("worker-1") == 2 and fake.tries("chief-0") == 1


def test_the_trigger_stops_its_role_when_a_peer_ends_the_job(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    event = first_event(trigger(pushed, "ps-0", spec), [lambda: fake.exit("chief-0", 3)])
    assert event["cause"].startswith("chief-0 failed with exit code 3")
    assert fake.statuses(fake.latest)["ps-0"].exit_code == 143
    assert fake.statuses(fake.latest)["worker-0"].exit_code is None  # its own watch stops it


def test_a_trigger_that_cannot_watch_says_why(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.cleanup(fake.latest)  # the launch is gone: no status can be read
    event = first_event(trigger(pushed, "chief-0", spec), [])
    assert event["error"].startswith("LookupError: no launch")


@pytest.mark.parametrize("roles", [5, 17, 65])
def test_a_poll_reads_two_things_whatever_the_jobs_size(fake: FakeBackend, roles: int) -> None:
    spec = job(workers=roles - 3, ps=1)  # chief, workers, ps, evaluator
    pushed = launched(fake, spec)
    fake.calls.clear()
    first_event(
        trigger(pushed, "worker-0", spec), [lambda: None] * 9 + [lambda: fake.exit("worker-0", 0)]
    )
    assert len(fake.calls) == 2 * 11  # a status list and a log read per poll, 11 polls


def test_the_watch_fails_at_once_naming_the_role_its_exit_and_last_lines(
    fake: FakeBackend,
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.write_log("chief-0", "step 3\nValueError: bad feature\n")
    fake.exit("chief-0", 3)
    with pytest.raises(AirflowFailException) as failed:
        watch("chief-0").execute(context(pushed))
    assert str(failed.value) == (
        "chief-0 failed with exit code 3: a failure of the program itself, which no restart "
        "fixes\nthe last lines of chief-0's log:\nstep 3\nValueError: bad feature"
    )


def test_the_watch_restarts_a_crash_it_finds_then_defers(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.exit("evaluator-0", 137)
    with pytest.raises(TaskDeferred) as deferred:
        watch("evaluator-0").execute(context(pushed))
    assert fake.tries("evaluator-0") == 2
    assert deferred.value.trigger.role_restarts == 1  # type: ignore[attr-defined]


def test_a_crash_that_needs_every_role_restarted_fails_the_watch_saying_why(
    fake: FakeBackend,
) -> None:
    spec = job(workers=1, ps=0)
    pushed = launched(fake, spec)
    fake.exit("worker-0", 137)
    with pytest.raises(AirflowFailException, match="restarting every role is not done inside"):
        watch("worker-0").execute(context(pushed))
    assert fake.tries("worker-0") == 1


def test_the_events_of_a_stopped_role_and_of_a_failed_watch(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.stop(fake.latest, ["ps-0"])
    with pytest.raises(AirflowFailException, match=r"^ps-0 was stopped: chief-0 failed"):
        watch("ps-0").execute_complete(
            context(pushed), {"cause": "chief-0 failed", "log_offset": 0}
        )
    with pytest.raises(RoleFailed, match="watching ps-0 failed: TimeoutError: no answer"):
        watch("ps-0").execute_complete(context(pushed), {"error": "TimeoutError: no answer"})
