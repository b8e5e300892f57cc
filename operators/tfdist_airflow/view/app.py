"""The Training view's FastAPI app, mounted by the plugin under the API server at `/tfdist`.

Every route needs an authenticated Airflow user allowed to read the DAG's runs and XComs (the
API server's own dependencies: a bearer token or the UI's cookie); without one it answers 401
or 403. Imported only by the API server, and it imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from airflow.models.log import Log
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from tfdist.storage import Storage
from tfdist_airflow.contracts import RETURN_KEY, Launched
from tfdist_airflow.view.bar import Bar, GateTask, render, the_bar
from tfdist_airflow.view.collect import BarOf, TaskRow, XComs, collect_view
from tfdist_airflow.view.compare import RunChoice, render_comparison
from tfdist_airflow.view.files import Listing, listing, render_files
from tfdist_airflow.view.history import Version, history, render_history
from tfdist_airflow.view.model import TrainingView
from tfdist_airflow.view.page import render_page
from tfdist_airflow.view.states import STATE_EVENTS, StopRequest, stop_requests
from tfdist_airflow.view.urls import (
    COMPARE_ROUTE,
    FILES_ROUTE,
    HISTORY_ROUTE,
    VIEW_PREFIX,
    VIEW_ROUTE,
)

ACCESS = [
    Depends(requires_access_dag("GET", DagAccessEntity.RUN)),
    Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
]
XCOM_KEYS = (RETURN_KEY, Launched.key)


def view_storages() -> Callable[[str], Storage]:
    """Storage per path; gs:// uses the connection `[tfdist] view_gcp_conn_id` if set, else
    Application Default Credentials."""
    from airflow.configuration import conf

    from tfdist.storage import GCS_SCHEME, new_gcs_client, storage_for
    from tfdist_airflow.gcp import credentials_from_extras

    conn_id = conf.get("tfdist", "view_gcp_conn_id", fallback="") or ""

    def storage(path: str) -> Storage:
        if not conn_id or not path.startswith(GCS_SCHEME):
            return storage_for(path)
        from airflow.models.connection import Connection

        extras = Connection.get_connection_from_secrets(conn_id).extra_dejson
        return storage_for(path, new_gcs_client(*credentials_from_extras(conn_id, extras)))

    return storage


def _state(value: Any) -> str | None:
    """A state enum's value (the database may also give a plain string)."""
    return None if value is None else str(getattr(value, "value", value))


def _rows(session: Session, dag_id: str, run_id: str) -> list[TaskRow]:
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    )
    return [
        TaskRow(
            task_id=ti.task_id,
            kind=ti.custom_operator_name,
            state=_state(ti.state),
            map_index=ti.map_index,
            rendered_map_index=ti.rendered_map_index,
            start=ti.start_date,
            end=ti.end_date,
            try_number=ti.try_number,
        )
        for ti in tis
    ]


def _xcoms(session: Session, dag_id: str, run_id: str) -> XComs:
    rows = session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.map_index == -1,
            XComModel.key.in_(XCOM_KEYS),
        )
    )
    return {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}


def _stops(session: Session, dag_id: str, run_id: str) -> tuple[StopRequest, ...]:
    """Who set the run or one of its tasks failed, and when (Airflow's audit log)."""
    rows = session.execute(
        select(Log.event, Log.owner, Log.dttm, Log.task_id, Log.extra).where(
            Log.dag_id == dag_id, Log.run_id == run_id, Log.event.in_(STATE_EVENTS)
        )
    )
    return stop_requests((str(e), str(o or "a user"), d, t, x) for e, o, d, t, x in rows)


def _bar_of(
    dags: DBDagBag, session: Session, run: DagRun, storage_of: Callable[[str], Storage]
) -> BarOf:
    """A gate task's thresholds, from the run's serialized DAG and the run's params (read only
    when a gate has not decided yet)."""

    def bar(task_id: str) -> Bar | None:
        dag = dags.get_dag_for_run(run, session)
        task = dag.task_dict.get(task_id) if dag is not None else None
        if dag is None or task is None or not hasattr(task, "thresholds"):
            return None
        fields = GateTask(
            thresholds=task.thresholds,
            serving_base=getattr(task, "serving_base", None),
            model_name=getattr(task, "model_name", None),
        )
        params = {**dag.params.dump(), **(run.conf or {})}
        return the_bar(fields, params, storage_of)

    return bar


def load_view(session: Session, dag_id: str, run_id: str, dags: DBDagBag) -> TrainingView:
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, f"DAG {dag_id} has no run {run_id}")
    storage_of = view_storages()
    return collect_view(
        dag_id=dag_id,
        run_id=run_id,
        run_state=_state(run.state),
        rows=_rows(session, dag_id, run_id),
        xcoms=_xcoms(session, dag_id, run_id),
        storage_of=storage_of,
        stops=_stops(session, dag_id, run_id),
        bar_of=_bar_of(dags, session, run, storage_of),
    )


def _tensorboard() -> str:
    from airflow.configuration import conf

    return str(conf.get("tfdist", "tensorboard_url", fallback="") or "")


def _listings(view: TrainingView) -> list[Listing]:
    """Each step's model directory's files."""
    storage_of = view_storages()
    found = []
    for step in view.steps:
        if not step.model_dir:
            continue
        try:
            found.append(listing(step.model_dir, storage_of(step.model_dir).list(step.model_dir)))
        except Exception as error:  # OSError, a cloud client's own errors (auth, network)
            problem = f"cannot list {step.model_dir}: {type(error).__name__}: {error}"
            found.append(listing(step.model_dir, [], problem))
    return found


MAX_VERSIONS = 50  # versions whose gate decisions are read for the history page


def _served_models(dags: DBDagBag, session: Session, run: DagRun) -> list[tuple[str, str]]:
    """(serving base, model name) of each gate task of the run's DAG, rendered with its params
    where they are templates."""
    dag = dags.get_dag_for_run(run, session)
    if dag is None:
        return []
    params = {**dag.params.dump(), **(run.conf or {})}
    found = []
    for task in dag.tasks:
        base, name = getattr(task, "serving_base", None), getattr(task, "model_name", None)
        if (
            not hasattr(task, "thresholds")
            or not isinstance(base, str)
            or not isinstance(name, str)
        ):
            continue
        try:
            model = (str(render(base, params)), str(render(name, params)))
        except Exception:  # a template that needs more than params
            continue
        if model not in found:
            found.append(model)
    return found


def _versions(serving_base: str, model_name: str) -> tuple[Version, ...]:
    from tfdist.deploy import deployments
    from tfdist.gate import Blessing, read_blessing

    storage_of = view_storages()
    deployed = deployments(storage_of(serving_base), serving_base, model_name)
    blessings: dict[int, Blessing | None] = {}
    for deployment in deployed[:MAX_VERSIONS]:
        try:
            blessings[deployment.version] = read_blessing(
                storage_of(deployment.model_dir), deployment.model_dir
            )
        except Exception:  # its model directory is gone: the version without margins
            blessings[deployment.version] = None
    return history(deployed, blessings)


MAX_CHOICES = 30  # the DAG's latest runs offered to compare with


def _choices(session: Session, dag_id: str) -> list[RunChoice]:
    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.start_date)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.id.desc())
        .limit(MAX_CHOICES)
    )
    return [RunChoice(run_id=r, state=_state(s), start=t) for r, s, t in rows]


def _runs_of(session: Session, dag_id: str, run_ids: set[str]) -> set[str]:
    """Which of `run_ids` are runs of the DAG."""
    found = session.scalars(
        select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))
    )
    return set(found)


async def _login_first(request: Request, error: Exception) -> Response:
    """A page opened without a signed-in user goes to the login page, and back after it; the
    JSON routes answer 401 as they are."""
    if not isinstance(error, StarletteHTTPException):
        raise error
    json_route = request.url.path.removeprefix(f"/{VIEW_PREFIX}").startswith("/api/")
    if error.status_code == 401 and not json_route:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), 303)
    return await http_exception_handler(request, error)


def create_app() -> FastAPI:
    app = FastAPI(title="tfdist Training view", docs_url=None, redoc_url=None)
    app.add_exception_handler(StarletteHTTPException, _login_first)
    dags = DBDagBag(load_op_links=False)

    @app.get(f"/{VIEW_ROUTE}/{{dag_id}}/{{run_id}}", dependencies=ACCESS)
    def training_page(dag_id: str, run_id: str, session: SessionDep) -> HTMLResponse:
        """The page the UI shows in the run's Training tab."""
        view = load_view(session, dag_id, run_id, dags)
        return HTMLResponse(render_page(view, now=datetime.now(UTC), tensorboard=_tensorboard()))

    @app.get(f"/{HISTORY_ROUTE}/{{dag_id}}/{{run_id}}", dependencies=ACCESS)
    def model_history(dag_id: str, run_id: str, session: SessionDep) -> HTMLResponse:
        """The page the UI shows in the run's Model history tab."""
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            raise HTTPException(404, f"DAG {dag_id} has no run {run_id}")
        models = [
            (name, _versions(base, name)) for base, name in _served_models(dags, session, run)
        ]
        trained_by = {version.run_id for _, versions in models for version in versions}
        comparable = _runs_of(session, dag_id, trained_by)
        title = f"Model history: {dag_id}"
        return HTMLResponse(render_history(title, models, run_id, dag_id, comparable))

    @app.get(f"/{COMPARE_ROUTE}/{{dag_id}}/{{run_id}}", dependencies=ACCESS)
    def compare_runs(
        dag_id: str,
        run_id: str,
        session: SessionDep,
        other: Annotated[str | None, Query(alias="with")] = None,
    ) -> HTMLResponse:
        """The run's curves with another run's of the same DAG, and the runs to pick from."""
        this = load_view(session, dag_id, run_id, dags)
        that = load_view(session, dag_id, other, dags) if other else None
        return HTMLResponse(render_comparison(this, that, _choices(session, dag_id)))

    @app.get(f"/{FILES_ROUTE}/{{dag_id}}/{{run_id}}", dependencies=ACCESS)
    def model_files(dag_id: str, run_id: str, session: SessionDep) -> HTMLResponse:
        """The page the UI shows in the run's Model files tab."""
        view = load_view(session, dag_id, run_id, dags)
        title = f"Model files: {dag_id} / {run_id}"
        return HTMLResponse(render_files(title, _listings(view)))

    @app.get(f"/api/{VIEW_ROUTE}/{{dag_id}}/{{run_id}}", dependencies=ACCESS)
    def training_data(dag_id: str, run_id: str, session: SessionDep) -> dict[str, Any]:
        """The same view as JSON."""
        return load_view(session, dag_id, run_id, dags).model_dump(mode="json")

    return app
