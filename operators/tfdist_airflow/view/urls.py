"""Where the view and the task links point: Cloud Console, Cloud Logging, TensorBoard, the view.

Pure string functions; an empty string means "no link".
"""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com"
VIEW_PREFIX = "tfdist"  # the plugin app's url prefix under the API server
VIEW_ROUTE = "training"  # the page's route in the app, and its tab's in the UI
FILES_ROUTE = "files"  # the model directory's listing
FILES_TAB = "model-files"
HISTORY_ROUTE = "history"  # the model's deployed versions
HISTORY_TAB = "model-history"
COMPARE_ROUTE = "compare"  # two runs' curves on the same axes


def compare_url(dag_id: str, run_id: str, other: str = "") -> str:
    """From a page of the app at `<prefix>/<route>/<dag>/<run>` to the comparison of the run
    with `other` (or to the runs to pick it from), relative: in the same frame, behind a
    proxy's path prefix too."""
    url = f"../../{COMPARE_ROUTE}/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    return f"{url}?with={quote(other, safe='')}" if other else url


def console_url(path: str) -> str:
    """The Cloud Console page of a gs:// path (bucket or prefix); "" for other paths."""
    if not path.startswith("gs://"):
        return ""
    return f"{CONSOLE}/storage/browser/{quote(path.removeprefix('gs://').strip('/'))}"


def run_tab_url(dag_id: str, run_id: str, tab: str) -> str:
    """A tab of the run's page in the Airflow UI (with its navigation), relative to the UI's
    base URL (the UI's pages set it as their `<base href>`)."""
    return f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/plugin/{tab}"


def training_view_url(dag_id: str, run_id: str) -> str:
    """The run's Training tab in the Airflow UI."""
    return run_tab_url(dag_id, run_id, VIEW_ROUTE)


def files_view_url(dag_id: str, run_id: str) -> str:
    """The run's Model files tab in the Airflow UI: its model directory's files."""
    return run_tab_url(dag_id, run_id, FILES_TAB)


def tensorboard_url(template: str, *, model_dir: str, dag_id: str, run_id: str) -> str:
    """`template` with `{model_dir}`, `{dag_id}` and `{run_id}` filled in (URL-quoted);
    "" when no template is configured."""
    if not template:
        return ""
    values = {"model_dir": model_dir, "dag_id": dag_id, "run_id": run_id}
    return template.format(**{key: quote(value, safe="") for key, value in values.items()})


def pod_logs_url(namespace: str, pod: str, project: str = "", *, prefix: bool = False) -> str:
    """Cloud Logging's query page for one pod's container logs (GKE); with `prefix`, of every
    pod whose name contains `pod` (a JobSet's pods end in a random suffix)."""
    match = ":" if prefix else "="
    query = (
        'resource.type="k8s_container"\n'
        f'resource.labels.namespace_name="{namespace}"\n'
        f'resource.labels.pod_name{match}"{pod}"'
    )
    suffix = f"?project={quote(project, safe='')}" if project else ""
    return f"{CONSOLE}/logs/query;query={quote(query, safe='')}{suffix}"
