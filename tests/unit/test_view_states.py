"""Role and run states in the model's words, by value: each role's status from its watch task,
its process and exit records and the supervision record; the step's sentence; users' stops
from Airflow's audit log; and a stopped run collected from disk and rendered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tfdist.records import Admission
from tfdist.spec import RestartPolicy
from tfdist.storage import storage_for
from tfdist.supervisor import Outcome, SupervisionState
from tfdist_airflow.contracts import Launched, TaskKind
from tfdist_airflow.view.collect import TaskRow, collect_view
from tfdist_airflow.view.page import render_page
from tfdist_airflow.view.states import (
    Ended,
    Launch,
    RoleExit,
    Status,
    StopRequest,
    Word,
    role_status,
    step_sentence,
    stop_requests,
)

AT = datetime(2026, 11, 30, 2, 7, 9, tzinfo=UTC)
ADMIN = StopRequest(user="admin", at=AT)
POLICY = RestartPolicy(max_role_restarts=3, max_job_restarts=2)


def launch(
    *, role_restarts: int = 0, job_restarts: int = 0, outcome: Outcome | None = None
) -> Launch:
    state = SupervisionState(
        job_restarts=job_restarts,
        role_restarts={"evaluator-0": role_restarts} if role_restarts else {},
        outcome=outcome,
    )
    return Launch(policy=POLICY, max_steps=4000, supervision=state)


def status(
    role: str = "chief-0",
    task_state: str | None = "deferred",
    *,
    started: bool = True,
    ended: RoleExit | None = None,
    restarts: int = 0,
    last_step: int | None = 2000,
    of: Launch | None = None,
    stops: tuple[StopRequest, ...] = (),
) -> str:
    found = role_status(
        role=role,
        task_state=task_state,
        started=started,
        ended=ended,
        restarts=restarts,
        last_step=last_step,
        launch=of or launch(),
        stops=stops,
    )
    return found.text


def test_a_role_before_and_while_it_trains() -> None:
    assert status(task_state="scheduled", started=False) == "queued"
    assert status(task_state=None, started=False) == "queued"
    assert status(started=False) == "starting"  # its watch task deferred, no process yet
    assert status() == "running"
    assert status(task_state="running") == "running"


def test_restarts_count_against_the_budget_of_their_scope() -> None:
    crashed = RoleExit(exit_code=137)
    # an evaluator restarts alone (max_role_restarts), a chief with the job (max_job_restarts)
    assert status("evaluator-0", ended=crashed, of=launch(role_restarts=1)) == "restarting (2 of 3)"
    assert status("chief-0", ended=crashed, of=launch(job_restarts=1)) == "restarting (2 of 2)"
    assert (
        status("evaluator-0", restarts=1, of=launch(role_restarts=1)) == "running (restart 1 of 3)"
    )
    relaunching = status("evaluator-0", started=False, restarts=1, of=launch(role_restarts=1))
    assert relaunching == "restarting (1 of 3)"
    # past its budget the crash fails the job: no restart is coming
    spent = status("chief-0", ended=crashed, of=launch(job_restarts=2))
    assert spent == "failed (killed by SIGKILL (exit code 137))"


def test_how_a_role_ended() -> None:
    assert status(ended=RoleExit(exit_code=0)) == "done"
    assert status(ended=RoleExit(exit_code=3)) == "failed (exit code 3)"
    gone = RoleExit(exit_code=143, reason="launcher gone")
    assert (
        status(ended=gone, task_state="failed")
        == "failed (launcher gone, killed by SIGTERM (exit code 143))"
    )
    stopped = RoleExit(exit_code=143, reason="stopped")
    assert status(ended=stopped, stops=(ADMIN,)) == "stopped by admin at 02:07:09, step 2000"
    assert status(ended=stopped, last_step=None) == "stopped on request"
    # a role that did not end within the stop's grace period was killed: still a stop
    killed = RoleExit(exit_code=137, reason="stopped")
    assert (
        status(ended=killed, stops=(ADMIN,)) == "stopped by admin at 02:07:09, step 2000 (SIGKILL)"
    )
    # a crash once the job's outcome is recorded is not restarted
    decided = launch(outcome=Outcome(succeeded=False, reason="chief-0 failed", role="chief-0"))
    assert (
        status(ended=RoleExit(exit_code=137), of=decided)
        == "failed (killed by SIGKILL (exit code 137))"
    )


def test_a_preempted_role_is_neither_failed_nor_counted() -> None:
    """Exit 75 after a notice (a local exit record): preempted, restarted without counting."""
    preempted = RoleExit(exit_code=75)
    assert status("worker-0", ended=preempted) == "preempted; restarting, not counted"
    assert status("chief-0", ended=preempted, of=launch(job_restarts=2)) == (
        "preempted; restarting, not counted"  # a spent budget does not matter: not counted
    )
    decided = launch(outcome=Outcome(succeeded=False, reason="chief-0 failed", role="chief-0"))
    assert status("worker-0", ended=preempted, of=decided) == "preempted"
    # exit 75 for another reason than the program's own exit is what that reason says
    assert status(ended=RoleExit(exit_code=75, reason="stopped")) == "stopped on request, step 2000"
    # restarted twice, once for a preemption: one restart counted
    assert status("chief-0", restarts=2, of=launch(job_restarts=1)) == (
        "running (restart 2, 1 of 2 counted)"
    )
    found = role_status(
        role="worker-0", task_state="deferred", started=False, ended=preempted, restarts=0,
        last_step=100, launch=launch(),
    )  # fmt: skip
    sentence = step_sentence(
        statuses=[found, Status(word=Word.RUNNING, text="running")], step=100,
        launch=launch(), stops=(), ended=Ended(run_over=False),
    )  # fmt: skip
    assert (found.word, sentence) == (Word.PREEMPTED, "restarting at step 100 of 4000")


def test_where_only_the_watch_task_is_known() -> None:
    """Kubernetes roles: the view reads no pods, so the watch task's state says it all."""
    known = Launch()
    assert status(task_state="deferred", started=False, of=known) == "starting"
    assert status(task_state="success", started=False, of=known) == "done"
    assert status(task_state="up_for_retry", started=False, of=known) == "restarting"
    assert status(task_state="failed", started=False, of=known) == "failed (its watch task failed)"
    stopped = status(task_state="failed", started=False, of=known, stops=(ADMIN,))
    assert stopped == "stopped by admin at 02:07:09"
    assert (
        status(task_state="upstream_failed", started=False, of=known) == "not run (upstream_failed)"
    )


def test_a_launch_kueue_holds_reads_as_queued_where_and_since_when() -> None:
    """The launch's wait in Kueue, as its watch keeps it in the model directory: queued with
    Kueue's answer while it waits; once admitted, the watch task's state again."""
    waiting = Admission(
        launch_id="l1",
        queue="gpu-queue",
        queued_at=AT.timestamp(),
        detail="queued in Kueue (queue gpu-queue: 2nd of 3 in it, 5th in its cluster queue): "
        "Pending: insufficient quota",
    )
    held = Launch(max_steps=4000, admission=waiting)
    found = role_status(
        role="worker-1",
        task_state="deferred",
        started=False,
        ended=None,
        restarts=0,
        last_step=None,
        launch=held,
    )
    assert found == Status(
        word=Word.QUEUED,
        text="queued in Kueue (queue gpu-queue: 2nd of 3 in it, 5th in its cluster queue): "
        "Pending: insufficient quota; since 02:07:09 UTC",
    )
    sentence = step_sentence(
        statuses=[found], step=None, launch=held, stops=(), ended=Ended(run_over=False)
    )
    assert sentence == found.text
    admitted = Launch(admission=waiting.model_copy(update={"admitted_at": AT.timestamp() + 60}))
    assert status(task_state="deferred", started=False, of=admitted) == "starting"
    assert status(task_state="failed", started=False, of=held) == "failed (its watch task failed)"


def test_stops_are_the_audit_log_rows_that_set_a_state_to_failed() -> None:
    later = AT.replace(minute=9)
    rows = [
        ("patch_dag_run", "admin", later, None, json.dumps({"state": "failed", "method": "PATCH"})),
        ("patch_dag_run", "admin", AT, None, json.dumps({"note": "looks bad"})),
        ("patch_task_instance", "ml-eng", AT, "t.watch", json.dumps({"new_state": "failed"})),
        ("patch_task_instance", "ml-eng", AT, "t.watch", json.dumps({"new_state": "success"})),
        ("trigger_dag_run", "admin", AT, None, json.dumps({"state": "failed"})),
        ("patch_dag_run", "admin", None, None, json.dumps({"state": "failed"})),
        ("patch_dag_run", "admin", AT, None, "{not json"),
    ]
    assert stop_requests(rows) == (
        StopRequest(user="ml-eng", at=AT, task_id="t.watch"),
        StopRequest(user="admin", at=later),
    )


def words(*pairs: tuple[Word, str]) -> list[Status]:
    return [Status(word=word, text=text) for word, text in pairs]


RUNNING = (Word.RUNNING, "running")
DONE = (Word.DONE, "done")
STOPPED = (Word.STOPPED, "stopped by admin")


@pytest.mark.parametrize(
    ("statuses", "step", "of", "stops", "ended", "sentence"),
    [
        pytest.param(
            words(STOPPED, STOPPED),
            2000,
            launch(),
            (ADMIN,),
            Ended(run_over=True),
            "stopped by admin at step 2000 of 4000 (02:07:09 UTC); nothing deployed",
            id="stopped",
        ),
        pytest.param(
            words((Word.FAILED, "failed (exit code 3)")),
            300,
            launch(outcome=Outcome(succeeded=False, reason="chief-0 failed with exit code 3")),
            (),
            Ended(run_over=True),
            "failed at step 300 of 4000: chief-0 failed with exit code 3; nothing deployed",
            id="failed",
        ),
        pytest.param(
            words(RUNNING, RUNNING),
            1200,
            launch(),
            (),
            Ended(run_over=False),
            "training, step 1200 of 4000",
            id="training",
        ),
        pytest.param(
            words((Word.QUEUED, "queued")),
            None,
            launch(),
            (),
            Ended(run_over=False),
            "queued: no role has started yet",
            id="queued",
        ),
        pytest.param(
            words(RUNNING, (Word.RESTARTING, "restarting (1 of 2)")),
            800,
            launch(),
            (),
            Ended(run_over=False),
            "restarting at step 800 of 4000",
            id="restarting",
        ),
        pytest.param(
            words(DONE, DONE),
            4000,
            launch(),
            (),
            Ended(run_over=True, blessed=True, deployed="digits version 2"),
            "trained to step 4000 of 4000; blessed; deployed digits version 2",
            id="blessed",
        ),
        pytest.param(
            words(DONE),
            4000,
            launch(),
            (),
            Ended(
                run_over=True, blessed=False, not_blessed_because="accuracy 0.85 is below min 0.9"
            ),
            "trained to step 4000 of 4000; not blessed (accuracy 0.85 is below min 0.9); "
            "nothing deployed",
            id="not-blessed",
        ),
        pytest.param(
            words(DONE),
            4000,
            launch(),
            (),
            Ended(run_over=True, gate_state="upstream_failed"),
            "trained to step 4000 of 4000; never reached the gate (gate task: upstream_failed); "
            "nothing deployed",
            id="no-gate",
        ),
        pytest.param(
            words(DONE),
            4000,
            launch(),
            (),
            Ended(run_over=False),
            "trained to step 4000 of 4000; waiting for the gate",
            id="gating",
        ),
        pytest.param(
            words(RUNNING),
            20,
            launch(),
            (),
            Ended(run_over=True),
            "ended at step 20 of 4000 before training finished; nothing deployed",
            id="cut-short",
        ),
    ],
)
def test_the_steps_sentence(
    statuses: list[Status],
    step: int | None,
    of: Launch,
    stops: tuple[StopRequest, ...],
    ended: Ended,
    sentence: str,
) -> None:
    assert (
        step_sentence(statuses=statuses, step=step, launch=of, stops=stops, ended=ended) == sentence
    )


def test_a_run_marked_failed_reads_as_stopped(tmp_path: Path) -> None:
    """A run directory whose roles were stopped on request at step 2000, the launch's
    supervision record, and the audit log's stop: the page says who stopped it, at which
    step, and that the gate was never reached."""
    from tfdist.spec import parse_spec
    from tfdist_airflow.roles import redacted

    roles = ("chief-0", "evaluator-0")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for role in roles:
        (run_dir / f"{role}.pid").write_text(json.dumps({"pid": 1, "created": AT.timestamp()}))
        (run_dir / f"{role}.log").write_text(f"{role} INFO step 2000/4000 (12.0 steps/s)\n")
        (run_dir / f"{role}.exit").write_text(
            json.dumps({"exit_code": 143, "reason": "stopped", "ended": AT.timestamp() + 60})
        )
    outcome = Outcome(succeeded=False, reason="chief-0 was stopped on request", role="chief-0")
    (run_dir / "supervision.json").write_text(SupervisionState(outcome=outcome).model_dump_json())
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"chief": 1, "evaluator": 1},
            "train_spec": {"max_steps": 4000},
            "model_dir": str(tmp_path / "model"),
        }
    )
    handle = {"backend": "local", "job_id": str(run_dir), "launch_id": "x", "roles": roles}
    rows = [
        TaskRow("t.launch", TaskKind.LAUNCH, "success"),
        *(
            TaskRow("t.watch", TaskKind.WATCH, "failed", map_index=i, rendered_map_index=r)
            for i, r in enumerate(roles)
        ),
        TaskRow("gate", TaskKind.GATE, "upstream_failed"),
        TaskRow("deploy", TaskKind.DEPLOY, "upstream_failed"),
    ]
    xcoms = {("t.launch", Launched.key): {"spec": redacted(spec), "handle": handle}}
    view = collect_view(
        dag_id="nightly", run_id="r", run_state="success", rows=rows, xcoms=xcoms,
        storage_of=storage_for, stops=(ADMIN,),
    )  # fmt: skip
    (step,) = view.steps
    assert [row.status.text for row in step.roles] == [
        "stopped by admin at 02:07:09, step 2000",
        "stopped by admin at 02:07:09, step 2000",
    ]
    assert step.sentence == "stopped by admin at step 2000 of 4000 (02:07:09 UTC); nothing deployed"
    page = render_page(view, now=AT)
    assert (
        '<p class="outcome" id="outcome">Stopped by admin at step 2000 of 4000 (02:07:09 UTC); '
        "nothing deployed</p>"
    ) in page
    assert "No gate decision: the run ended before the gate decided" in page
    assert "yet" not in page
    assert page.count('data-word="stopped"') == 2


def test_a_launch_queued_in_kueue_reads_so_from_its_model_directory(tmp_path: Path) -> None:
    """A JobSet launch (the view calls no cluster): its watch kept Kueue's answer in the
    model directory; the page says where the launch stands and draws its wait."""
    from tfdist.records import admission_name
    from tfdist.spec import parse_spec
    from tfdist_airflow.roles import redacted

    model_dir = str(tmp_path / "model")
    waiting = Admission(
        launch_id="l1",
        queue="gpu-queue",
        queued_at=AT.timestamp(),
        detail="queued in Kueue (queue gpu-queue: 1st of 2 in it, 3rd in its cluster queue): "
        "Pending: insufficient quota",
    )
    storage_for(model_dir).write_text(admission_name(model_dir, "l1"), waiting.model_dump_json())
    roles = ("chief-0", "worker-0")
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"chief": 1, "worker": 1},
            "train_spec": {"max_steps": 4000},
            "model_dir": model_dir,
        }
    )
    handle = {"backend": "jobset", "job_id": "ml/digits-1", "launch_id": "l1", "roles": roles}
    rows = [
        TaskRow("t.launch", TaskKind.LAUNCH, "success"),
        *(
            TaskRow("t.watch", TaskKind.WATCH, "deferred", map_index=i, rendered_map_index=r,
                    start=AT)
            for i, r in enumerate(roles)
        ),
    ]  # fmt: skip
    xcoms = {("t.launch", Launched.key): {"spec": redacted(spec), "handle": handle}}
    view = collect_view(
        dag_id="nightly", run_id="r", run_state="running", rows=rows, xcoms=xcoms,
        storage_of=storage_for,
    )  # fmt: skip
    (step,) = view.steps
    expected = f"{waiting.detail}; since 02:07:09 UTC"
    assert [row.status.text for row in step.roles] == [expected, expected]
    assert step.sentence == expected
    page = render_page(view, now=AT.replace(minute=19))
    assert "waiting 720 s for admission" in page
    assert page.count('data-word="queued"') == 2
