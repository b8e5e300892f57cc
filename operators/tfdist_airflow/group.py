"""`train_and_evaluate(...)`: one DAG step that expands into the job's role tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import TaskGroup

from tfdist.lifecycle import RoleId
from tfdist.locations import check_locations
from tfdist.spec import JobSpec, load_spec
from tfdist_airflow.backends import BackendConfig, LocalBackend, storage_cluster
from tfdist_airflow.roles import LaunchRolesOperator, StopRolesOperator, WatchRoleOperator


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
) -> TaskGroup:
    """Add a task group `launch >> watch[chief-0, worker-0, ...] >> stop` to the current DAG.

    `stop` is a teardown: it stops what is left of the roles, also when the run fails or is
    marked failed, and then fails the run if training did not finish.

    :param job: a `JobSpec`, or the path of its YAML/JSON file (read when the DAG is parsed).
    :param backend: where roles run; default: local processes (`LocalBackend()`).
    :param model_dir_base: each run trains in `<base>/<dag_id>/<run>`; default: the spec's
        `model_dir`. An absolute local path or gs://BUCKET/PREFIX (gs:// on Kubernetes),
        checked here unless templated, else by the launch task. (templated)
    :param overrides: spec fields by dotted path, e.g. `{"train_spec.max_steps":
        "{{ params.max_steps }}"}`. (templated)
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
    backend_data = backend.model_dump(mode="json")
    with TaskGroup(group_id=group_id, tooltip=f"train and evaluate {spec.name}") as group:
        launch = LaunchRolesOperator(
            task_id="launch",
            job=spec.model_dump(mode="json"),
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
        ).expand(role=[RoleId(kind=kind, index=index).name for kind, index in spec.roles()])
        stop = StopRolesOperator(
            task_id="stop",
            backend=backend_data,
            group_id=group.group_id or group_id,
            launch_task_id=launch.task_id,
        )
        # The teardown fails the run when training did not finish (see StopRolesOperator).
        launch >> watch >> stop.as_teardown(setups=launch, on_failure_fail_dagrun=True)
    return group
