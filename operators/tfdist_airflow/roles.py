"""The operators of one train-and-evaluate step: launch all roles, watch each, stop what is left.

Airflow has no gang scheduling, and `airflow dags test` runs one task at a time, so a chief
task that waited for worker tasks would hang. Instead one setup task starts every role at
once, each role gets its own deferrable watch task (its log, its state, its retries), and a
teardown task stops whatever the run left behind, also when the run failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from tfdist.backend import Backend, JobHandle, RoleState
from tfdist.fingerprint import claim_model_dir
from tfdist.locations import check_location, check_locations
from tfdist.preflight import check_writable
from tfdist.rolelog import relay
from tfdist.spec import JobSpec, SpecError, parse_spec
from tfdist_airflow.backends import backend_from_dict, connect, storage_cluster
from tfdist_airflow.contracts import RETURN_KEY, ContractMissing, Launched, TaskKind, pull
from tfdist_airflow.gcp import storages
from tfdist_airflow.goodput import launch_goodput
from tfdist_airflow.links import ROLE_LINKS
from tfdist_airflow.masking import mask_trainer_env
from tfdist_airflow.refusals import FAIL_AT_ONCE, refusing
from tfdist_airflow.runs import run_model_dir, run_scope, unfinished_step

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from tfdist.supervisor import Supervised

REDACTED = "<redacted>"
TAIL_LINES = 20  # of a failed role's log, in its watch task's failure


class RoleFailed(RuntimeError):
    """Watching a role failed (its backend could not be read); a retry may succeed."""


def _scope(context: Context, group_id: str) -> str:
    return run_scope(context["dag"].dag_id, context["run_id"], group_id)


def redacted(spec: JobSpec) -> dict[str, Any]:
    """The spec as XCom keeps it: `trainer.env` values (credentials, often) replaced."""
    data = spec.model_dump(mode="json")
    data["trainer"]["env"] = dict.fromkeys(data["trainer"]["env"], REDACTED)
    return data


def supervised(spec: JobSpec, handle: JobHandle, backend: Backend) -> Supervised:
    """What the supervisor knows of a launch, as every task of the step builds it."""
    from tfdist.supervisor import Supervised

    return Supervised.of(spec, handle.roles, engine_runs_policy=backend.capabilities.runs_policy)


class LaunchRolesOperator(BaseOperator):
    """Plans the job for this run and starts every role together.

    First checks the input, writing nothing until every check passed: the spec and its
    storage locations (absolute local paths or gs://; gs:// only on cluster backends), whether
    the backend can run the job (the local one: the trainer is there, the machine is big
    enough), what the step's later tasks need of the job (`before_launch`: the gate an
    evaluator, the deploy a serving base it can write), that the model directory and those
    paths can be written (`tfdist.preflight`), and that the model directory holds no other
    trainer's checkpoints (`tfdist.fingerprint`). Bad input fails the task at once, without a
    retry, its reason in one log line (`tfdist_airflow.refusals`).

    A retry (the task's process was killed after the roles started) reattaches to the gang
    still running in this run's step instead of starting a second one; an earlier launch
    that no longer runs is stopped and cleaned up, and the new one resumes from its last
    checkpoint. Hands over `Launched`, with `trainer.env` values redacted (the task logs and
    rendered fields show them as `***`, see `tfdist_airflow.masking`), and returns the
    names of the roles it started, which the watch tasks are mapped over.

    :param job: the job spec, as a dict (see `tfdist.spec.JobSpec`).
    :param backend: where roles run, as a dict (see `tfdist_airflow.backends`).
    :param group_id: the train-and-evaluate step this launch belongs to.
    :param model_dir_base: model directories are `<base>/<dag_id>/<run>`. (templated)
    :param overrides: spec fields by dotted path, e.g. `{"train_spec.max_steps": 400}`; every
        field but `model_dir` (see `model_dir_base`). (templated)
    :param gcp_conn_id: the Airflow connection for gs:// paths (see `tfdist_airflow.gcp`);
        default: Application Default Credentials.
    """

    template_fields: Sequence[str] = ("model_dir_base", "overrides")
    ui_color = "#ffe0b2"
    custom_operator_name = TaskKind.LAUNCH

    def __init__(
        self,
        *,
        job: dict[str, Any],
        backend: dict[str, Any],
        group_id: str,
        model_dir_base: str,
        overrides: dict[str, Any] | None = None,
        gcp_conn_id: str | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("retry_policy", FAIL_AT_ONCE)
        super().__init__(**kwargs)
        self.job = job
        self.backend = backend
        self.group_id = group_id
        self.model_dir_base = model_dir_base
        self.overrides = overrides or {}
        self.gcp_conn_id = gcp_conn_id

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        """Renders the templated fields, then registers every `trainer.env` value with the
        secrets masker, before Airflow stores the rendered fields or anything is logged."""
        super().render_template_fields(context, jinja_env)
        mask_trainer_env(self.job, self.overrides)

    def render_spec(self, context: Context) -> JobSpec:
        if "model_dir" in self.overrides:
            raise SpecError(
                "overrides: model_dir is this run's own directory under model_dir_base; "
                "set model_dir_base instead"
            )
        base = check_location("model_dir_base", self.model_dir_base, relative_ok=False)
        model_dir = run_model_dir(base, context["dag"].dag_id, context["run_id"])
        return parse_spec(self.job).with_overrides({**self.overrides, "model_dir": model_dir})

    def execute(self, context: Context) -> list[str]:
        scope = self._scope = _scope(context, self.group_id)
        with refusing(self.log):  # bad input fails the task at once, with nothing written
            spec, backend = self._admit(context)
        launched_at = None
        handle = self._running_launch(backend, scope)
        if handle is None:
            launched_at, handle = time.time(), self._launch(backend, spec, scope)
        launched = Launched(spec=redacted(spec), handle=handle, launched_at=launched_at)
        context["ti"].xcom_push(key=Launched.key, value=launched.model_dump(mode="json"))
        return list(handle.roles)

    def _running_launch(self, backend: Backend, scope: str) -> JobHandle | None:
        """The gang an earlier try of this task started and that still runs (never two
        gangs); earlier launches that no longer run, or whose try died before it started
        every role (one never left pending, where roles start one by one), are stopped and
        cleaned up."""
        running = None
        for previous in backend.handles(scope):
            states = [status.state for status in backend.statuses(previous).values()]
            started = backend.capabilities.atomic_launch or RoleState.PENDING not in states
            if running is None and started and not all(state.finished for state in states):
                with backend.supervision(previous) as record:
                    undecided = record.state.outcome is None
                if undecided:
                    self.log.warning(
                        "reattached to launch %s, which an earlier try started and still runs: %s",
                        previous.launch_id,
                        ", ".join(previous.roles),
                    )
                    running = previous
                    continue
            self.log.info("stopping what is left of an earlier launch %s", previous.launch_id)
            backend.stop(previous)
            backend.cleanup(previous)
        return running

    def _launch(self, backend: Backend, spec: JobSpec, scope: str) -> JobHandle:
        job = backend.plan(spec, scope)
        for role in job.roles:
            self.log.info("%s: TF_CONFIG %s", role.name, role.env["TF_CONFIG"])
        handle = backend.launch(job)
        self.log.info("launched %s; model_dir %s", ", ".join(handle.roles), spec.model_dir)
        return handle

    def _admit(self, context: Context) -> tuple[JobSpec, Backend]:
        """Every check of the launch, in the order that writes last: the spec and its
        locations, whether the backend can run the job, the preflights, the fingerprint."""
        config = backend_from_dict(self.backend)
        # An Airflow task has no working directory of its own to resolve a relative path in,
        # and the pods of a cluster backend share no disk.
        cluster = storage_cluster(config)
        check_locations({"model_dir_base": self.model_dir_base}, relative_ok=False, cluster=cluster)
        spec = self.render_spec(context)
        later = self._later_needs(spec, context)
        check_locations({"data_dir": spec.data_dir, **later}, relative_ok=False, cluster=cluster)
        backend = config.connect()
        backend.admit(spec)
        storage = storages(self.gcp_conn_id)
        for field, path in {"model_dir": spec.model_dir, **later}.items():
            check_writable(path, storage(path), field=field)
            self.log.info("preflight: %s %s is writable", field, path)
        claim_model_dir(storage(spec.model_dir), spec)  # never resume another model's checkpoints
        return spec, backend

    def _later_needs(self, spec: JobSpec, context: Context) -> dict[str, str]:
        """Ask every later task of the DAG that can say (`before_launch`) whether it can use
        this run's job; returns the paths they will write, by field."""
        paths: dict[str, str] = {}
        later = self.get_flat_relatives(upstream=False) if self.has_dag() else []
        for task in later:
            before_launch = getattr(task, "before_launch", None)
            if callable(before_launch):
                paths.update(before_launch(spec, context))
        return paths

    def on_kill(self) -> None:
        """A launch task killed while launching stops whatever it had started."""
        scope: str | None = getattr(self, "_scope", None)
        if scope is not None:
            backend = connect(self.backend)
            for handle in backend.handles(scope):
                backend.stop(handle)


class WatchRoleOperator(BaseOperator):
    """Follows one role and drives the job's supervisor (`tfdist.supervisor`) until the role
    succeeded or the job's outcome is decided: streams the role's log; whichever watch sees an
    end first carries out what the policy says (restart that role, restart every role from the
    last checkpoint, stop the others), once, under the launch's supervision record.

    Deferrable: while the role runs the task holds no worker slot. When the job failed for
    good (the program's own error, a crash past its budget, a role that never started) every
    watch still running fails with `AirflowFailException`: no retry, no retry delay; the
    failed role's watch names how it ended and its last log lines, the others say they were
    stopped and why. Retries are for the watch itself (a lost worker, an unreachable backend):
    a retry reattaches to its role, and the restart counts it finds are the launch's own.

    :param role: the role to follow, e.g. `worker-1`.
    :param launch_task_id: the task that launched the job.
    """

    template_fields: Sequence[str] = ("role",)
    ui_color = "#c8e6c9"
    custom_operator_name = TaskKind.WATCH
    operator_extra_links = ROLE_LINKS

    def __init__(
        self,
        *,
        role: str,
        launch_task_id: str,
        backend: dict[str, Any],
        poll_interval: float = 2.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.role = role
        self.launch_task_id = launch_task_id
        self.backend = backend
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> None:
        self._follow(context, offset=0)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        # Do not trust the event alone (inline triggers in `dags test` may not pass it): the
        # outcome is read again from the launch's record, the log from where the trigger
        # stopped.
        event = event or {}
        offset = int(event.get("log_offset", 0))
        if event.get("error"):
            handle = pull(context, self.launch_task_id, Launched).handle
            self._show_log(handle, offset)
            raise RoleFailed(f"watching {self.role} failed: {event['error']}")
        self._follow(context, offset)

    def _backend(self) -> Backend:
        return connect(self.backend)

    def _follow(self, context: Context, offset: int) -> None:
        """One supervisor step; fail, finish, or defer while the role runs."""
        from tfdist.supervision import drive  # not needed to parse a DAG

        launched = pull(context, self.launch_task_id, Launched)
        spec, handle = launched.spec, launched.handle
        self._handle = handle
        backend = self._backend()
        job = supervised(spec, handle, backend)
        offset = self._show_log(handle, offset)
        driven = drive(backend, handle, job)
        if driven.step.say:
            self.log.warning("%s", driven.step.say)
        outcome = driven.step.state.outcome
        status = driven.statuses[self.role]
        if outcome is not None and not outcome.succeeded:
            why = outcome.reason
            if outcome.role != self.role:
                why = f"{self.role} was stopped: {why}"
            raise AirflowFailException(self._failure(handle, why))
        if status.state is RoleState.SUCCEEDED:
            self.log.info("%s succeeded", self.role)
        elif outcome is not None:  # done without this role: it ended after training, stopped
            end = status.end
            how = end.describe() if end is not None else status.state.value
            self.log.warning("%s: %s; the job succeeded: %s", self.role, how, outcome.reason)
        else:
            from tfdist_airflow.triggers import RoleExitTrigger  # not needed to parse a DAG

            self.defer(
                trigger=RoleExitTrigger(
                    backend=self.backend,
                    handle=handle.model_dump(mode="json"),
                    role=self.role,
                    job=job.model_dump(mode="json"),
                    log_offset=offset,
                    poll_interval=self.poll_interval,
                    model_dir=spec.model_dir,
                ),
                method_name="execute_complete",
            )

    def _show_log(self, handle: JobHandle, offset: int) -> int:
        text, offset = self._backend().read_log(handle, self.role, offset)
        for line in text.splitlines():  # at the role's own level and time
            relay(self.log, self.role, line)
        return offset

    def _failure(self, handle: JobHandle, reason: str) -> str:
        """`reason`, then the last lines of the role's log."""
        self.log.error("%s", reason)
        text, _ = self._backend().read_log(handle, self.role, 0)
        last = text.splitlines()[-TAIL_LINES:]
        if not last:
            return reason
        return "\n".join([reason, f"the last lines of {self.role}'s log:", *last])

    def on_kill(self) -> None:
        """A killed watch task stops its role: a half-watched job must not run on unseen."""
        handle: JobHandle | None = getattr(self, "_handle", None)
        if handle is not None:
            self._backend().stop(handle, [self.role])


class StopRolesOperator(BaseOperator):
    """Teardown: stops every role this run's step still has running, whatever happened.

    Then the backend removes what a launch leaves behind (on Kubernetes: its JobSet).
    Last, it fails (no retry) when the step did not finish: the supervisor recorded a failure,
    or, where it recorded no outcome, a role of the run's launch failed or was still running.
    It holds the launch's supervision record meanwhile, so no watch acts on what it stops.
    `train_and_evaluate` makes it a teardown with `on_failure_fail_dagrun=True`, so such a run
    ends failed. That is the one mechanism that
    also holds when a user marks a running run failed: Airflow then fails the running tasks,
    skips the pending ones and still runs the teardowns, and it judges the run by its leaves
    (the skipped export and deploy would make it a success).

    :param launch_task_id: the step's launch task; its launch is the one judged (earlier
        launches of a retried launch task are stopped but not judged). Default: every launch.
    """

    ui_color = "#ffcdd2"
    custom_operator_name = TaskKind.STOP

    def __init__(
        self,
        *,
        backend: dict[str, Any],
        group_id: str,
        launch_task_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.backend = backend
        self.group_id = group_id
        self.launch_task_id = launch_task_id

    def execute(self, context: Context) -> dict[str, Any] | None:
        from airflow.sdk.exceptions import AirflowFailException

        backend = connect(self.backend)
        judged = self._judged_launch(context)
        unfinished = []
        for handle in backend.handles(_scope(context, self.group_id)):
            with backend.supervision(handle) as record:  # no watch acts while this one ends
                statuses = backend.statuses(handle)
                outcome = record.state.outcome
                running = [role for role, status in statuses.items() if not status.state.finished]
                if running:
                    self.log.warning(
                        "stopping %s of launch %s", ", ".join(running), handle.launch_id
                    )
                    backend.stop(handle, running)
                else:
                    self.log.info("launch %s: every role had already ended", handle.launch_id)
            backend.cleanup(handle)
            if judged in (None, handle.launch_id):
                unfinished.append(unfinished_step(statuses, outcome))
        goodput = launch_goodput(context, self.launch_task_id, self.log.info)
        why = "; ".join(filter(None, unfinished))
        if why:
            if goodput is not None:  # a failed task returns nothing: hand it over all the same
                context["ti"].xcom_push(key=RETURN_KEY, value=goodput)
            raise AirflowFailException(f"the training step did not finish: {why}")
        return goodput

    def _judged_launch(self, context: Context) -> str | None:
        if self.launch_task_id is None:
            return None
        try:
            return pull(context, self.launch_task_id, Launched).handle.launch_id
        except ContractMissing:  # it failed before it launched: judge every launch
            return None
