"""The Airflow plugin of tfdist: the Training view, a tab on every DAG run's page.

Registered through the `airflow.plugins` entry point, so installing the package is enough.
The FastAPI app is built only when the API server asks for it: schedulers and workers load
plugins too, and need none of it.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from tfdist_airflow.view.urls import (
    FILES_ROUTE,
    FILES_TAB,
    HISTORY_ROUTE,
    HISTORY_TAB,
    VIEW_PREFIX,
    VIEW_ROUTE,
)

TRAINING_VIEW = {
    "name": "Training",
    "href": f"{VIEW_PREFIX}/{VIEW_ROUTE}/{{DAG_ID}}/{{RUN_ID}}",  # relative: behind proxies too
    "destination": "dag_run",
    "url_route": VIEW_ROUTE,
}
MODEL_FILES = {
    "name": "Model files",
    "href": f"{VIEW_PREFIX}/{FILES_ROUTE}/{{DAG_ID}}/{{RUN_ID}}",
    "destination": "dag_run",
    "url_route": FILES_TAB,
}


MODEL_HISTORY = {
    "name": "Model history",
    "href": f"{VIEW_PREFIX}/{HISTORY_ROUTE}/{{DAG_ID}}/{{RUN_ID}}",
    "destination": "dag_run",
    "url_route": HISTORY_TAB,
}


class TfdistPlugin(AirflowPlugin):
    name = "tfdist"
    external_views = [TRAINING_VIEW, MODEL_FILES, MODEL_HISTORY]  # noqa: RUF012 (Airflow's plugin attribute)

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from tfdist_airflow.view.app import create_app

        return [{"app": create_app(), "url_prefix": f"/{VIEW_PREFIX}", "name": "tfdist"}]
