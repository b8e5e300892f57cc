"""The operators of one train-and-evaluate step: launch all roles, watch each, stop what is left.

Airflow has no gang scheduling, and `airflow dags test` runs one task at a time, so a chief
task that waited for worker tasks would hang. Instead one setup task starts every role at
once, each role gets its own deferrable watch task (its log, its state, its retries), and a
teardown task stops whatever the run left behind, also when the run failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from tfdist.backend import Backend, JobHandle
from tfdist.fingerprint import claim_model_dir
from tfdist.lifecycle import Action
from tfdist.locations import check_location, check_locations
from tfdist.preflight import check_writable
from tfdist.rolelog import relayed
from tfdist.spec import JobSpec, parse_spec
from tfdist_airflow.backends import backend_from_dict, connect
from tfdist_airflow.gcp import storages
from tfdist_airflow.links import ROLE_LINKS
from tfdist_airflow.masking import mask_trainer_env
from tfdist_airflow.refusals import FAIL_AT_ONCE, refusing
from tfdist_airflow.runs import WatchPolicy, run_model_dir, run_scope, unfinished_step

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

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


def launched_job(context: Context, launch_task_id: str) -> tuple[JobSpec, JobHandle]:
    """The spec (`trainer.env` values redacted) and handle the launch task pushed to XCom."""
    pushed = context["ti"].xcom_pull(task_ids=launch_task_id)
    if not pushed:
        raise RuntimeError(f"{launch_task_id} pushed no job; did the launch task run?")
    return JobSpec.model_validate(pushed["spec"]), JobHandle.model_validate(pushed["handle"])


class LaunchRolesOperator(BaseOperator):
    """Plans the job for this run and starts every role together.

    First checks the input, writing nothing until every check passed: the spec and its
    storage locations (absolute local paths or gs://; gs:// only on cluster backends), whether
    the backend can run the job (the local one: the trainer is there, the machine is big
    enough), that the model directory and `preflight_paths` (such as the serving base, which
    `gate_export_deploy` adds) can be written (`tfdist.preflight`), and that the model
    directory holds no other trainer's checkpoints (`tfdist.fingerprint`). Bad input fails the
    task at once, without a retry, its reason in one log line (`tfdist_airflow.refusals`).
    XCom gets the spec with `trainer.env` values redacted; the task logs and rendered fields
    show them as `***` (see `tfdist_airflow.masking`).

    :param job: the job spec, as a dict (see `tfdist.spec.JobSpec`).
    :param backend: where roles run, as a dict (see `tfdist_airflow.backends`).
    :param group_id: the train-and-evaluate step this launch belongs to.
    :param model_dir_base: model directories are `<base>/<dag_id>/<run>`. (templated)
    :param overrides: spec fields by dotted path, e.g. `{"train_spec.max_steps": 400}`. (templated)
    :param preflight_paths: other paths the run writes later, named by field, e.g.
        `{"serving_base": "gs://bucket/serving"}`. (templated)
    :param gcp_conn_id: the Airflow connection for gs:// paths (see `tfdist_airflow.gcp`);
        default: Application Default Credentials.
    """

    template_fields: Sequence[str] = ("model_dir_base", "overrides", "preflight_paths")
    ui_color = "#ffe0b2"

    def __init__(
        self,
        *,
        job: dict[str, Any],
        backend: dict[str, Any],
        group_id: str,
        model_dir_base: str,
        overrides: dict[str, Any] | None = None,
        preflight_paths: dict[str, str] | None = None,
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
        self.preflight_paths = preflight_paths or {}
        self.gcp_conn_id = gcp_conn_id

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        """Renders the templated fields, then registers every `trainer.env` value with the
        secrets masker, before Airflow stores the rendered fields or anything is logged."""
        super().render_template_fields(context, jinja_env)
        mask_trainer_env(self.job, self.overrides)

    def render_spec(self, context: Context) -> JobSpec:
        base = check_location("model_dir_base", self.model_dir_base, relative_ok=False)
        model_dir = run_model_dir(base, context["dag"].dag_id, context["run_id"])
        return parse_spec(self.job).with_overrides({**self.overrides, "model_dir": model_dir})

    def execute(self, context: Context) -> dict[str, Any]:
        scope = self._scope = _scope(context, self.group_id)
        with refusing(self.log):  # bad input fails the task at once, with nothing written
            spec, backend = self._admit(context)
        for previous in backend.handles(scope):  # an earlier try of this task: never two gangs
            self.log.info("stopping the roles of an earlier launch %s", previous.launch_id)
            backend.stop(previous)
        job = backend.plan(spec, scope)
        for role in job.roles:
            self.log.info("%s: TF_CONFIG %s", role.name, role.env["TF_CONFIG"])
        handle = backend.launch(job)
        self.log.info("launched %s; model_dir %s", ", ".join(handle.roles), spec.model_dir)
        return {"spec": redacted(spec), "handle": handle.model_dump(mode="json")}

    def _admit(self, context: Context) -> tuple[JobSpec, Backend]:
        """Every check of the launch, in the order that writes last: the spec and its
        locations, whether the backend can run the job, the preflights, the fingerprint."""
        config = backend_from_dict(self.backend)
        # An Airflow task has no working directory of its own to resolve a relative path in,
        # and the pods of a cluster backend share no disk.
        cluster = None if config.kind in ("local", "fake") else config.kind
        check_locations({"model_dir_base": self.model_dir_base}, relative_ok=False, cluster=cluster)
        spec = self.render_spec(context)
        others = {"data_dir": spec.data_dir, **self.preflight_paths}
        check_locations(others, relative_ok=False, cluster=cluster)
        backend = config.connect()
        backend.admit(spec)
        storage = storages(self.gcp_conn_id)
        for field, path in {"model_dir": spec.model_dir, **self.preflight_paths}.items():
            check_writable(path, storage(path), field=field)
            self.log.info("preflight: %s %s is writable", field, path)
        claim_model_dir(storage(spec.model_dir), spec)  # never resume another model's checkpoints
        return spec, backend

    def on_kill(self) -> None:
        """A launch task killed while launching stops whatever it had started."""
        scope: str | None = getattr(self, "_scope", None)
        if scope is not None:
            backend = connect(self.backend)
            for handle in backend.handles(scope):
                backend.stop(handle)


class WatchRoleOperator(BaseOperator):
    """Follows one role until the restart policy (`tfdist.lifecycle`) decides: streams its log,
    restarts it when the policy restarts it alone, fails when the policy ends the job.

    Deferrable: while the role runs the task holds no worker slot. A role that failed for good
    (the program's own error, a crash past its budget, a peer's end that ends the job, or a
    crash that needs every role restarted, which is not done inside a run) fails the task with
    `AirflowFailException`: no retry, no retry delay; the message names the role, how it ended
    and its last log lines. Retries are for the watch itself (a lost worker, an unreachable
    backend): a retry reattaches to a running role and applies the policy to one that ended.

    :param role: the role to follow, e.g. `worker-1`.
    :param launch_task_id: the task that launched the job.
    """

    template_fields: Sequence[str] = ("role",)
    ui_color = "#c8e6c9"
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

    def execute(self, context: Context) -> dict[str, Any]:
        spec, handle = launched_job(context, self.launch_task_id)
        self._handle = handle
        return self._follow(WatchPolicy.of(spec), handle, offset=0, role_restarts=0)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        spec, handle = launched_job(context, self.launch_task_id)
        self._handle = handle
        # Do not trust the event alone (inline triggers in `dags test` may not pass it): the
        # status is re-read from the backend, the log from where the trigger stopped.
        event = event or {}
        offset = int(event.get("log_offset", 0))
        restarts = int(event.get("role_restarts", 0))
        if event.get("error"):
            self._show_log(handle, offset)
            raise RoleFailed(f"watching {self.role} failed: {event['error']}")
        if event.get("cause"):
            self._show_log(handle, offset)
            raise AirflowFailException(
                self._failure(handle, f"{self.role} was stopped: {event['cause']}")
            )
        return self._follow(WatchPolicy.of(spec), handle, offset, restarts)

    def _backend(self) -> Backend:
        return connect(self.backend)

    def _follow(
        self, policy: WatchPolicy, handle: JobHandle, offset: int, role_restarts: int
    ) -> dict[str, Any]:
        """Apply the policy to the role as it is now; defer while it runs."""
        backend = self._backend()
        offset = self._show_log(handle, offset)
        status = backend.statuses(handle)[self.role]
        verdict = policy.own_verdict(self.role, status, role_restarts, final=backend.applies_policy)
        if verdict is not None and verdict.action is Action.RESTART_ROLE:
            self.log.warning("%s", verdict.reason)
            backend.relaunch(handle, self.role)
            role_restarts += verdict.counted
            verdict = None
        if verdict is None:
            from tfdist_airflow.triggers import RoleExitTrigger  # not needed to parse a DAG

            self.defer(
                trigger=RoleExitTrigger(
                    backend=self.backend,
                    handle=handle.model_dump(mode="json"),
                    role=self.role,
                    policy=policy.model_dump(mode="json"),
                    log_offset=offset,
                    poll_interval=self.poll_interval,
                    role_restarts=role_restarts,
                ),
                method_name="execute_complete",
            )
        if verdict.action is not Action.SUCCEEDED:
            raise AirflowFailException(self._failure(handle, verdict.reason))
        self.log.info("%s succeeded", self.role)
        return status.model_dump(mode="json")

    def _show_log(self, handle: JobHandle, offset: int) -> int:
        text, offset = self._backend().read_log(handle, self.role, offset)
        for line in text.splitlines():  # one time a line: Airflow's
            self.log.info("[%s] %s", self.role, relayed(self.role, line))
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

    Then the backend removes what a launch leaves behind (on Kubernetes: its pods and Service).
    Last, it fails (no retry) when the step did not finish: a role of the run's launch failed
    or was still running. `train_and_evaluate` makes it a teardown with
    `on_failure_fail_dagrun=True`, so such a run ends failed. That is the one mechanism that
    also holds when a user marks a running run failed: Airflow then fails the running tasks,
    skips the pending ones and still runs the teardowns, and it judges the run by its leaves
    (the skipped export and deploy would make it a success).

    :param launch_task_id: the step's launch task; its launch is the one judged (earlier
        launches of a retried launch task are stopped but not judged). Default: every launch.
    """

    ui_color = "#ffcdd2"

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

    def execute(self, context: Context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        backend = connect(self.backend)
        judged = self._judged_launch(context)
        unfinished = []
        for handle in backend.handles(_scope(context, self.group_id)):
            statuses = backend.statuses(handle)
            running = [role for role, status in statuses.items() if not status.state.finished]
            if running:
                self.log.warning("stopping %s of launch %s", ", ".join(running), handle.launch_id)
                backend.stop(handle, running)
            else:
                self.log.info("launch %s: every role had already ended", handle.launch_id)
            backend.cleanup(handle)
            if judged in (None, handle.launch_id):
                unfinished.append(unfinished_step(statuses))
        why = "; ".join(filter(None, unfinished))
        if why:
            raise AirflowFailException(f"the training step did not finish: {why}")

    def _judged_launch(self, context: Context) -> str | None:
        if self.launch_task_id is None:
            return None
        pushed = context["ti"].xcom_pull(task_ids=self.launch_task_id)
        return str(pushed["handle"]["launch_id"]) if pushed else None
