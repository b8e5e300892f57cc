"""The DAG API: `train_and_evaluate(...)`, one DAG step that expands into the job's role tasks,
and `gate_export_deploy(step, ...)`, the tasks that follow it.

Tasks hand each other versioned models (`tfdist_airflow.contracts`), never operator fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import EdgeModifier, TaskGroup
from airflow.sdk.definitions._internal.mixins import DependencyMixin

from tfdist.locations import check_locations
from tfdist.spec import JobSpec, load_spec
from tfdist_airflow.backends import BackendConfig, LocalBackend, storage_cluster
from tfdist_airflow.deploy import DeployModelOperator
from tfdist_airflow.export import ExportModelOperator
from tfdist_airflow.gate import BlessingGateOperator
from tfdist_airflow.masking import trainer_overrides
from tfdist_airflow.roles import LaunchRolesOperator, StopRolesOperator, WatchRoleOperator


@dataclass(frozen=True)
class TrainingStep(DependencyMixin):
    """What `train_and_evaluate` built: its task group (use it in `>>` like the group) and
    what the tasks after it need to know of it."""

    group: TaskGroup
    launch_task_id: str
    job: dict[str, Any]
    backend: BackendConfig
    overrides: Mapping[str, Any] = field(default_factory=dict)
    gcp_conn_id: str | None = None

    @property
    def group_id(self) -> str:
        return self.group.group_id or ""

    @property
    def roots(self) -> Iterable[DependencyMixin]:
        return self.group.roots

    @property
    def leaves(self) -> Iterable[DependencyMixin]:
        return self.group.leaves

    def set_upstream(
        self,
        other: DependencyMixin | Sequence[DependencyMixin],
        edge_modifier: EdgeModifier | None = None,
    ) -> None:
        self.group.set_upstream(other, edge_modifier)

    def set_downstream(
        self,
        other: DependencyMixin | Sequence[DependencyMixin],
        edge_modifier: EdgeModifier | None = None,
    ) -> None:
        self.group.set_downstream(other, edge_modifier)

    def update_relative(
        self,
        other: DependencyMixin,
        upstream: bool = True,
        edge_modifier: EdgeModifier | None = None,
    ) -> None:
        self.group.update_relative(other, upstream, edge_modifier)


def train_and_evaluate(
    job: JobSpec | str | Path,
    *,
    group_id: str = "train_and_evaluate",
    backend: BackendConfig | None = None,
    model_dir_base: str | None = None,
    overrides: dict[str, Any] | None = None,
    watch_retries: int = 2,
    poll_interval: float = 2.0,
    gcp_conn_id: str | None = None,
) -> TrainingStep:
    """Add a task group `launch >> watch[chief-0, worker-0, ...] >> stop` to the current DAG.

    The watch tasks are mapped over the roles the launch really started, so the cluster's
    size can come from the run: `overrides={"cluster.worker": "{{ params.workers }}"}`.
    `stop` is a teardown: it stops what is left of the roles, also when the run fails or is
    marked failed, and then fails the run if training did not finish.

    :param job: a `JobSpec`, or the path of its YAML/JSON file (read when the DAG is parsed).
    :param backend: where roles run; default: local processes (`LocalBackend()`).
    :param model_dir_base: each run trains in `<base>/<dag_id>/<run>`; default: the spec's
        `model_dir`. An absolute local path or gs://BUCKET/PREFIX (gs:// on Kubernetes),
        checked here unless templated, else by the launch task. (templated)
    :param overrides: spec fields by dotted path, e.g. `{"train_spec.max_steps":
        "{{ params.max_steps }}", "cluster.worker": "{{ params.workers }}"}`. (templated)
    :param watch_retries: retries of each watch task, for failures of the watch itself (an
        unreachable backend): a retry reattaches to its role. A role that failed for good fails
        its watch at once, without retry; a crash the restart policy restarts alone is
        restarted by the watch itself.
    :param gcp_conn_id: the Airflow connection (Google Cloud) used for gs:// paths by the
        launch's preflight and by `gate_export_deploy`; default: Application Default
        Credentials. Role processes use their own credentials.
    """
    spec = job if isinstance(job, JobSpec) else load_spec(job)
    backend = backend or LocalBackend()
    base_field = "model_dir_base" if model_dir_base else "model_dir"
    model_dir_base = model_dir_base or spec.model_dir
    # Refused while the DAG is parsed: what no run could use. Templates: by the launch task.
    # An override replaces the spec's value (a relative `data_dir` in a spec file is fine
    # when the DAG gives an absolute one).
    data_dir = (overrides or {}).get("data_dir", spec.data_dir)
    check_locations(
        {base_field: model_dir_base, "data_dir": data_dir},
        relative_ok=False,  # an Airflow task has no working directory of its own
        cluster=storage_cluster(backend),
    )
    job_data = spec.model_dump(mode="json")
    backend_data = backend.model_dump(mode="json")
    with TaskGroup(group_id=group_id, tooltip=f"train and evaluate {spec.name}") as group:
        launch = LaunchRolesOperator(
            task_id="launch",
            job=job_data,
            backend=backend_data,
            group_id=group.group_id or group_id,
            model_dir_base=model_dir_base,
            overrides=overrides,
            gcp_conn_id=gcp_conn_id,
        )
        watch = WatchRoleOperator.partial(
            task_id="watch",
            launch_task_id=launch.task_id,
            backend=backend_data,
            poll_interval=poll_interval,
            retries=watch_retries,
            map_index_template="{{ task.role }}",
        ).expand(role=launch.output)
        stop = StopRolesOperator(
            task_id="stop",
            backend=backend_data,
            group_id=group.group_id or group_id,
            launch_task_id=launch.task_id,
        )
        # The teardown fails the run when training did not finish (see StopRolesOperator).
        launch >> watch >> stop.as_teardown(setups=launch, on_failure_fail_dagrun=True)
    return TrainingStep(
        group=group,
        launch_task_id=launch.task_id,
        job=job_data,
        backend=backend,
        overrides=dict(overrides or {}),
        gcp_conn_id=gcp_conn_id,
    )


def gate_export_deploy(
    step: TrainingStep,
    *,
    thresholds: Mapping[str, Any] | str | None,
    serving_base: str,
    model_name: str,
    fail_when_not_blessed: bool = False,
) -> tuple[BlessingGateOperator, ExportModelOperator, DeployModelOperator]:
    """`gate >> export >> deploy` after a `train_and_evaluate` step.

    Before any role starts, the step's launch asks these tasks what they need of it: the gate
    an evaluator, the deploy a `serving_base` it can write. All three use the step's
    `gcp_conn_id`. A model that is not blessed leaves the run green (export and deploy skip,
    naming the reasons), or fails the run with `fail_when_not_blessed=True`.
    """
    check_locations(
        {"serving_base": serving_base},
        relative_ok=False,
        cluster=storage_cluster(step.backend),
    )
    sized_per_run = any(path.split(".")[0] == "cluster" for path in step.overrides)
    if not step.job["cluster"].get("evaluator") and not sized_per_run:
        raise ValueError(
            f"{step.group_id}: the gate reads the evaluator's results; add `evaluator: 1` "
            "to the job's cluster"
        )
    gate = BlessingGateOperator(
        task_id="gate",
        launch_task_id=step.launch_task_id,
        thresholds=thresholds,
        serving_base=serving_base,
        model_name=model_name,
        gcp_conn_id=step.gcp_conn_id,
        fail_when_not_blessed=fail_when_not_blessed,
    )
    export = ExportModelOperator(
        task_id="export",
        launch_task_id=step.launch_task_id,
        gate_task_id=gate.task_id,
        backend=step.backend.model_dump(mode="json"),
        job=step.job,
        trainer_overrides=trainer_overrides(step.overrides),
    )
    deploy = DeployModelOperator(
        task_id="deploy",
        gate_task_id=gate.task_id,
        export_task_id=export.task_id,
        serving_base=serving_base,
        model_name=model_name,
        gcp_conn_id=step.gcp_conn_id,
    )
    step >> gate >> export >> deploy
    return gate, export, deploy
