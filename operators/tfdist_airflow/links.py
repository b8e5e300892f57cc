"""Extra links on the role, gate, export and deploy tasks: model directory, TensorBoard, the
deployed version and, on Kubernetes, a role pod's logs in Cloud Logging.

Airflow computes a task's links when the task ends, in the worker, and keeps them in XCom; the
UI shows each as a button. A link with nothing to point at is empty (the UI greys it out).
Local paths have no web page of their own: they link to the run's Training view instead.

Configuration (`airflow.cfg` section `[tfdist]` or `AIRFLOW__TFDIST__...`):
`tensorboard_url`, a template with `{model_dir}`, `{dag_id}` and `{run_id}` (unset: no
TensorBoard link), and `gcp_project`, the project Cloud Logging links open in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from tfdist_airflow.contracts import RETURN_KEY, Deployed, Launched, read
from tfdist_airflow.view.urls import (
    console_url,
    files_view_url,
    tensorboard_url,
    training_view_url,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _setting(name: str) -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("tfdist", name, fallback="") or "")


def _xcom(ti_key: TaskInstanceKey, task_id: str, key: str = RETURN_KEY) -> Any:
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_one(
        key=key,
        dag_id=ti_key.dag_id,
        task_id=task_id,
        run_id=ti_key.run_id,
        map_index=-1,
    )


def _launched(operator: BaseOperator, ti_key: TaskInstanceKey) -> Launched | None:
    """The hand-over of the operator's step's launch task (the operator, if it is one)."""
    launch_task_id = getattr(operator, "launch_task_id", None) or ti_key.task_id
    return read(Launched, _xcom(ti_key, launch_task_id, Launched.key))


def _model_dir(operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
    launched = _launched(operator, ti_key)
    if launched is not None:
        return launched.spec.model_dir
    deployed = read(Deployed, _xcom(ti_key, ti_key.task_id))  # a deploy task's own
    return deployed.deployment.model_dir if deployed else ""


class ModelDirectoryLink(BaseOperatorLink):
    """The run's model directory: the Cloud Console for gs://, else the run's Model files tab."""

    name = "Model directory"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        model_dir = _model_dir(operator, ti_key)
        if not model_dir:
            return ""
        return console_url(model_dir) or files_view_url(ti_key.dag_id, ti_key.run_id)


class TensorBoardLink(BaseOperatorLink):
    """The configured TensorBoard for the run's model directory; off unless configured."""

    name = "TensorBoard"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        template = _setting("tensorboard_url")
        model_dir = _model_dir(operator, ti_key) if template else ""
        if not model_dir:
            return ""
        return tensorboard_url(
            template, model_dir=model_dir, dag_id=ti_key.dag_id, run_id=ti_key.run_id
        )


class DeployedVersionLink(BaseOperatorLink):
    """The version this run deployed: its directory in the Cloud Console, else the run's
    Training tab."""

    name = "Deployed version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        deployed = read(Deployed, _xcom(ti_key, ti_key.task_id))
        if deployed is None:
            return ""
        path = deployed.deployment.path
        return console_url(path) or training_view_url(ti_key.dag_id, ti_key.run_id)


class PodLogsLink(BaseOperatorLink):
    """The role pod's logs in Cloud Logging (the JobSet backend)."""

    name = "Pod logs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        launched = _launched(operator, ti_key)
        handle = launched.handle.model_dump(mode="json") if launched else {}
        backend, role = getattr(operator, "backend", {}), getattr(operator, "role", "")
        return role_pod_logs_url(backend, handle, role, _setting("gcp_project"))


def role_pod_logs_url(
    backend: dict[str, Any], handle: dict[str, Any], role: str, project: str
) -> str:
    """Where the backend (its configuration) keeps `role`'s log outside Airflow: Cloud Logging
    for a pod; "" for roles whose log is the watch task's own."""
    from tfdist_airflow.backends import backend_from_dict

    if not role:
        return ""
    return backend_from_dict(backend).role_log_url(handle, role, project)


ROLE_LINKS = (ModelDirectoryLink(), TensorBoardLink(), PodLogsLink())
STEP_LINKS = (ModelDirectoryLink(), TensorBoardLink())
DEPLOY_LINKS = (ModelDirectoryLink(), TensorBoardLink(), DeployedVersionLink())
