"""A role's watch task and its trigger drive the supervisor, on the in-memory backend.

The fake is injected by configuration (`{"kind": "fake", "name": ...}`), as a DAG would name
a real backend; each test moves the roles along itself between two polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from task_context import context

from tfdist.spec import JobSpec, parse_spec
from tfdist.supervision import Driven
from tfdist.testing import FakeBackend
from tfdist_airflow import triggers
from tfdist_airflow.roles import RoleFailed, WatchRoleOperator, redacted, supervised
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


def nothing() -> None:
    pass


def settled(fake: FakeBackend) -> None:
    """As if the settling time of a failure had passed since it was first seen."""
    launch = fake.launches[fake.latest.launch_id]
    launch.supervision = launch.supervision.model_copy(update={"failure_seen_at": 0.0})


def launched(fake: FakeBackend, spec: JobSpec) -> dict[str, Any]:
    handle = fake.launch(fake.plan(spec, "dag/run/group"))
    return {"spec": redacted(spec), "handle": handle.model_dump(mode="json")}


def trigger(pushed: dict[str, Any], role: str, spec: JobSpec, fake: FakeBackend) -> RoleExitTrigger:
    handle = fake.latest
    return RoleExitTrigger(
        backend=BACKEND,
        handle=pushed["handle"],
        role=role,
        job=supervised(spec, handle, fake).model_dump(mode="json"),
        poll_interval=0,
    )


def first_event(
    watcher: RoleExitTrigger,
    moves: list[Callable[[], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The trigger's event, the cluster making one move after each poll; a poll past the
    last move fails (a trigger that would poll forever)."""
    pending = iter(moves)
    drive = triggers.drive

    def drive_then_move(*args: Any) -> Driven:
        driven = drive(*args)
        move = next(pending, None)
        if move is None:
            raise AssertionError("the trigger polled again after the last move")
        move()
        return driven

    monkeypatch.setattr(triggers, "drive", drive_then_move)

    async def run() -> dict[str, Any]:
        async for event in watcher.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(run(), timeout=10))


def watch(role: str) -> WatchRoleOperator:
    return WatchRoleOperator(task_id="watch", role=role, launch_task_id="launch", backend=BACKEND)


def test_the_trigger_restarts_a_crashed_ps_worker_alone_and_follows_it(
    fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    event = first_event(
        trigger(pushed, "worker-1", spec, fake),
        [
            lambda: fake.exit("worker-1", 137),
            lambda: None,
            lambda: fake.exit("worker-1", 0),
            nothing,
        ],
        monkeypatch,
    )
    log = fake.launches[fake.latest.launch_id].logs["worker-1"]
    assert log == "----- starting worker-1 again -----\n"
    assert event == {"log_offset": len(log)}  # the restart marker was relayed
    assert fake.tries("worker-1") == 2 and fake.tries("chief-0") == 1
    assert fake.launches[fake.latest.launch_id].supervision.role_restarts == {"worker-1": 1}


def test_a_peers_failure_stops_every_role_and_ends_each_trigger(
    fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    event = first_event(
        trigger(pushed, "ps-0", spec, fake),
        [lambda: fake.exit("chief-0", 3), lambda: settled(fake), nothing],
        monkeypatch,
    )
    assert event == {"log_offset": 0}
    outcome = fake.launches[fake.latest.launch_id].supervision.outcome
    assert outcome is not None and outcome.role == "chief-0"
    assert {s.exit_code for s in fake.statuses(fake.latest).values()} == {3, 143}


def test_a_chief_crash_restarts_the_gang_once_however_many_watches_see_it(
    fake: FakeBackend,
) -> None:
    """Every role's watch polls right after the chief was killed, from threads at once: one
    of them restarts every role, the others find the gang running again."""
    spec = job(workers=2, ps=1)
    pushed = launched(fake, spec)
    fake.exit("chief-0", 137)
    handle = fake.latest
    job_ = supervised(spec, handle, fake)

    async def all_watches() -> list[Driven]:
        return list(
            await asyncio.gather(
                *(asyncio.to_thread(triggers.drive, fake, handle, job_) for _ in handle.roles)
            )
        )

    driven = asyncio.run(all_watches())
    assert [call for call in fake.calls if call[0] == "relaunch_job"] == [
        ("relaunch_job", handle.launch_id)
    ]
    assert sum(1 for one in driven if one.step.commands) == 1
    assert {fake.tries(role) for role in handle.roles} == {2}
    assert fake.launches[handle.launch_id].supervision.epoch == 1
    assert pushed["handle"]["launch_id"] == handle.launch_id


def test_a_trigger_that_cannot_watch_says_why(
    fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    watcher = trigger(pushed, "chief-0", spec, fake)
    fake.cleanup(fake.latest)  # the launch is gone: no status can be read
    event = first_event(watcher, [], monkeypatch)
    assert event["error"].startswith("LookupError: no launch")


@pytest.mark.parametrize("roles", [5, 17, 65])
def test_a_poll_reads_two_things_whatever_the_jobs_size(
    fake: FakeBackend, roles: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = job(workers=roles - 3, ps=1)  # chief, workers, ps, evaluator
    pushed = launched(fake, spec)
    watcher = trigger(pushed, "worker-0", spec, fake)
    fake.calls.clear()
    first_event(watcher, [nothing] * 9 + [lambda: fake.exit("worker-0", 0), nothing], monkeypatch)
    assert len(fake.calls) == 2 * 11  # a status list and a log read per poll, 11 polls


def test_the_watch_fails_at_once_naming_the_role_its_exit_and_last_lines(
    fake: FakeBackend,
) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.write_log("chief-0", "step 3\nValueError: bad feature\n")
    fake.exit("chief-0", 3)
    settled(fake)
    with pytest.raises(AirflowFailException) as failed:
        watch("chief-0").execute(context(pushed))
    assert str(failed.value) == (
        "chief-0 failed with exit code 3: a failure of the program itself, which no restart "
        "fixes\nthe last lines of chief-0's log:\nstep 3\nValueError: bad feature"
    )
    with pytest.raises(AirflowFailException, match=r"^ps-0 was stopped: chief-0 failed with"):
        watch("ps-0").execute(context(pushed))


def test_the_watch_restarts_a_crash_it_finds_then_defers(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    fake.exit("evaluator-0", 137)
    with pytest.raises(TaskDeferred):
        watch("evaluator-0").execute(context(pushed))
    assert fake.tries("evaluator-0") == 2
    assert fake.launches[fake.latest.launch_id].supervision.role_restarts == {"evaluator-0": 1}


def test_a_retried_watch_keeps_the_budget_the_launch_recorded(fake: FakeBackend) -> None:
    """Restart counts live with the launch: a fresh operator (a retry, another worker) finds
    the evaluator's budget spent and fails it, where a count in memory would restart it."""
    spec = job()
    pushed = launched(fake, spec)
    for _ in range(spec.restart_policy.max_role_restarts):
        fake.exit("evaluator-0", 137)
        with pytest.raises(TaskDeferred):
            watch("evaluator-0").execute(context(pushed))
    fake.exit("evaluator-0", 137)
    settled(fake)
    with pytest.raises(AirflowFailException, match="all 3 restarts used"):
        watch("evaluator-0").execute(context(pushed))
    assert fake.tries("evaluator-0") == 4


def test_a_chief_crash_restarts_every_role_inside_the_run(fake: FakeBackend) -> None:
    spec = job(workers=1, ps=0)
    pushed = launched(fake, spec)
    fake.exit("worker-0", 137)
    with pytest.raises(TaskDeferred):
        watch("chief-0").execute(context(pushed))
    assert [fake.tries(role) for role in ("chief-0", "worker-0", "evaluator-0")] == [2, 2, 2]


def test_a_failed_watch_says_why(fake: FakeBackend) -> None:
    spec = job()
    pushed = launched(fake, spec)
    with pytest.raises(RoleFailed, match="watching ps-0 failed: TimeoutError: no answer"):
        watch("ps-0").execute_complete(context(pushed), {"error": "TimeoutError: no answer"})


@pytest.mark.parametrize(
    ("state", "stopped"),
    [
        pytest.param("failed", True, id="marked-failed"),
        pytest.param("success", True, id="marked-success"),
        pytest.param("unknown", True, id="unreadable"),
        pytest.param("deferred", False, id="moved-to-another-triggerer"),
        pytest.param("restarting", False, id="cleared-while-deferred"),
        pytest.param(None, False, id="cleared"),
    ],
)
def test_a_cancelled_trigger_stops_its_role_only_when_a_user_ended_its_task(
    fake: FakeBackend, monkeypatch: pytest.MonkeyPatch, state: str | None, stopped: bool
) -> None:
    """Airflow 3.3 cancels a trigger "by user action" also when it moves to another
    triggerer; the task's state, read from the API server, tells the cases apart."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    spec = job()
    watcher = trigger(launched(fake, spec), "worker-1", spec, fake)
    watcher.task_instance = SimpleNamespace(
        dag_id="dag", task_id="train.watch", run_id="run", map_index=2
    )
    asked: list[dict[str, Any]] = []

    def task_states(**query: Any) -> dict[str, Any]:
        asked.append(query)
        if state == "unknown":
            raise ConnectionError("API server unreachable")
        return {"run": {"train.watch_2": state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(task_states))

    asyncio.run(watcher.on_kill())

    assert asked == [
        {"dag_id": "dag", "task_ids": ["train.watch"], "run_ids": ["run"], "map_index": 2}
    ]
    assert fake.statuses(fake.latest)["worker-1"].state.finished is stopped
    assert not fake.statuses(fake.latest)["worker-0"].state.finished
