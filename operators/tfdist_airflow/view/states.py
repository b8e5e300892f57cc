"""Role and run states in the model's words, by value: no I/O, no Airflow.

A role's watch task is `deferred` while its role trains; what the role did is in its run
directory (its `.pid` and `.exit` records) and the launch's supervision record (restart counts,
the job's outcome). A user's stop is in Airflow's audit log (who marked the run or a role's task
failed, and when). From these, one `Status` per role (queued, starting, running, restarting
(n of budget), preempted, stopped by a user, failed (the cause), done) and one sentence per step
("stopped by admin at step 2000 of 4000; nothing deployed").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from tfdist.lifecycle import Action, Ending, RoleEnd, RoleId, Scope, decide, restart_scope
from tfdist.records import Admission
from tfdist.spec import RestartPolicy
from tfdist.supervisor import SupervisionState

# Airflow task states that mean the task is not over yet.
UNFINISHED_TASK = ("scheduled", "queued", "running", "deferred", "up_for_retry", "restarting")
WAITING_TASK = (None, "none", "scheduled", "queued")
# Audit log events of a user setting a run's or a task's state.
STATE_EVENTS = ("patch_dag_run", "patch_task_instance", "patch_task_group_instances")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Word(StrEnum):
    """A role's state, as an ML engineer says it (also the state's colour on the page)."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    FAILED = "failed"
    DONE = "done"
    NOT_RUN = "not run"


class Status(_Frozen):
    word: Word
    text: str  # the word with its particulars: "restarting (1 of 3)", "failed (exit code 3)"


class RoleExit(_Frozen):
    """A role's `.exit` record: its exit code and why its supervisor says it ended."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    exit_code: int
    reason: str = "exited"  # "stopped" (on request), "killed", "launcher gone"


class StopRequest(_Frozen):
    """A user setting the run, or one of its tasks, to failed (Airflow's audit log)."""

    user: str
    at: datetime
    task_id: str | None = None


class Launch(_Frozen):
    """What a step's launch says about restarts (its policy and its supervision record) and
    about its wait in a queue (Kueue), where it has one."""

    policy: RestartPolicy = RestartPolicy()
    uses_parameter_servers: bool = False
    max_steps: int | None = None
    supervision: SupervisionState | None = None
    admission: Admission | None = None

    def queued(self) -> str | None:
        """While the queue holds the launch: where it stands and why, and since when."""
        wait = self.admission
        if wait is None or not wait.waiting:
            return None
        since = datetime.fromtimestamp(wait.queued_at, UTC)
        return f"{wait.detail or f'queued in {wait.queue}'}; since {since:%H:%M:%S} UTC"


AuditRow = tuple[str, str, datetime | None, str | None, str | None]


def stop_requests(events: Iterable[AuditRow]) -> tuple[StopRequest, ...]:
    """The audit log rows `(event, owner, when, task_id, extra)` that set a state to failed,
    oldest first."""
    found = []
    for event, owner, when, task_id, extra in events:
        if event not in STATE_EVENTS or when is None:
            continue
        try:
            body = json.loads(extra or "{}")
        except ValueError:
            continue
        if isinstance(body, dict) and "failed" in (body.get("state"), body.get("new_state")):
            found.append(StopRequest(user=owner, at=when, task_id=task_id))
    return tuple(sorted(found, key=lambda stop: stop.at))


def _budget(role: str, launch: Launch) -> tuple[int, int]:
    """Counted restarts used and allowed for the restart a role's crash gets."""
    try:
        kind = RoleId.parse(role).kind
    except ValueError:
        return 0, launch.policy.max_role_restarts
    state = launch.supervision or SupervisionState()
    if restart_scope(kind, launch.uses_parameter_servers) is Scope.ROLE:
        return state.role_restarts.get(role, 0), launch.policy.max_role_restarts
    return state.job_restarts, launch.policy.max_job_restarts


def _restarts(role: str, end: RoleEnd, launch: Launch, used: int) -> bool:
    """Whether the supervisor starts a role that ended so again (`tfdist.lifecycle.decide`)."""
    try:
        role_id = RoleId.parse(role)
    except ValueError:
        return False
    verdict = decide(
        role_id,
        end,
        uses_parameter_servers=launch.uses_parameter_servers,
        policy=launch.policy,
        role_restarts=used,
        job_restarts=used,
    )
    return verdict.action in (Action.RESTART_ROLE, Action.RESTART_JOB)


def _stopped_by(stops: Sequence[StopRequest], step: int | None) -> str:
    stop = stops[-1] if stops else None
    who = f"stopped by {stop.user}" if stop else "stopped on request"
    when = f" at {stop.at:%H:%M:%S}" if stop else ""
    at_step = f", step {step}" if step is not None else ""
    return f"{who}{when}{at_step}"


def role_status(
    *,
    role: str,
    task_state: str | None,
    started: bool,
    ended: RoleExit | None,
    restarts: int,
    last_step: int | None,
    launch: Launch,
    stops: Sequence[StopRequest] = (),
) -> Status:
    """One role's state from its watch task's state and, where the backend keeps them, its
    process and exit records (`started`, `ended`) and the launch's supervision record."""
    used, budget = _budget(role, launch)
    decided = launch.supervision is not None and launch.supervision.outcome is not None
    over = task_state not in UNFINISHED_TASK
    if ended is not None:
        end = RoleEnd.from_record(ended.exit_code, ended.reason)
        if end.ending is Ending.SUCCEEDED:
            return Status(word=Word.DONE, text="done")
        if end.ending is Ending.STOPPED:  # past the stop's grace period it was SIGKILLed
            killed = " (SIGKILL)" if ended.exit_code == 137 else ""
            return Status(word=Word.STOPPED, text=f"{_stopped_by(stops, last_step)}{killed}")
        coming = not decided and not over and _restarts(role, end, launch, used)
        if end.ending is Ending.PREEMPTED:
            text = "preempted; restarting, not counted" if coming else "preempted"
            return Status(word=Word.PREEMPTED, text=text)
        if coming:
            return Status(word=Word.RESTARTING, text=f"restarting ({used + 1} of {budget})")
        how = RoleEnd.from_exit(ended.exit_code).describe()  # the exit code alone
        cause = how if ended.reason in ("", "exited") else f"{ended.reason}, {how}"
        return Status(word=Word.FAILED, text=f"failed ({cause})")
    if started and not over:
        if restarts and restarts != used:  # some restarts were not counted: preemptions
            text = f"running (restart {restarts}, {used} of {budget} counted)"
            return Status(word=Word.RUNNING, text=text)
        if restarts:
            return Status(word=Word.RUNNING, text=f"running (restart {used} of {budget})")
        return Status(word=Word.RUNNING, text="running")
    if restarts and not over:
        return Status(word=Word.RESTARTING, text=f"restarting ({used} of {budget})")
    if not started and not over and (queued := launch.queued()):
        return Status(word=Word.QUEUED, text=queued)
    return _task_status(task_state, started, stops)


def _task_status(task_state: str | None, started: bool, stops: Sequence[StopRequest]) -> Status:
    """The state where only the watch task's state is known (no run directory)."""
    match task_state:
        case None | "none" | "scheduled" | "queued":
            return Status(word=Word.QUEUED, text="queued")
        case "deferred" | "running":
            word = Word.RUNNING if started else Word.STARTING
            return Status(word=word, text=word.value)
        case "up_for_retry" | "restarting":
            return Status(word=Word.RESTARTING, text="restarting")
        case "success":
            return Status(word=Word.DONE, text="done")
        case "failed" if stops:
            return Status(word=Word.STOPPED, text=_stopped_by(stops, None))
        case "failed":
            return Status(word=Word.FAILED, text="failed (its watch task failed)")
    return Status(word=Word.NOT_RUN, text=f"not run ({task_state})")


class Ended(_Frozen):
    """What the step's sentence needs of the gate and the deploy."""

    run_over: bool
    blessed: bool | None = None  # None: the gate decided nothing
    not_blessed_because: str | None = None
    gate_state: str | None = None
    deployed: str | None = None  # "digits version 2"


def _of(step: int | None, max_steps: int | None) -> str:
    if step is None:
        return "step unknown"
    return f"step {step} of {max_steps}" if max_steps else f"step {step}"


def step_sentence(
    *,
    statuses: Sequence[Status],
    step: int | None,
    launch: Launch,
    stops: Sequence[StopRequest],
    ended: Ended,
) -> str:
    """The step's outcome in one sentence: where training is, or how it ended and what was
    deployed ("stopped by admin at step 2000 of 4000; nothing deployed")."""
    outcome = launch.supervision.outcome if launch.supervision else None
    words = {status.word for status in statuses}
    where = _of(step, launch.max_steps)
    deploy = f"deployed {ended.deployed}" if ended.deployed else "nothing deployed"
    if Word.STOPPED in words or (stops and outcome is not None and not outcome.succeeded):
        stop = stops[-1] if stops else None
        if stop is None:
            return f"stopped on request at {where}; {deploy}"
        return f"stopped by {stop.user} at {where} ({stop.at:%H:%M:%S} UTC); {deploy}"
    if outcome is not None and not outcome.succeeded:
        return f"failed at {where}: {outcome.reason}; {deploy}"
    if Word.FAILED in words and ended.run_over:
        failed = next(s.text for s in statuses if s.word is Word.FAILED)
        return f"{failed} at {where}; {deploy}"
    trained = outcome is not None or (statuses and words == {Word.DONE})
    if not trained:
        if ended.run_over:
            return f"ended at {where} before training finished; {deploy}"
        if words <= {Word.QUEUED}:
            return launch.queued() or "queued: no role has started yet"
        if words & {Word.RESTARTING, Word.PREEMPTED}:
            return f"restarting at {where}"
        return f"training, {where}" if Word.RUNNING in words else "starting"
    done = f"trained to {where}"
    if ended.blessed is True:
        return f"{done}; blessed; {deploy}"
    if ended.blessed is False:
        return f"{done}; not blessed ({ended.not_blessed_because}); {deploy}"
    if ended.run_over:
        gate = ended.gate_state or "not run"
        return f"{done}; never reached the gate (gate task: {gate}); {deploy}"
    return f"{done}; waiting for the gate"
