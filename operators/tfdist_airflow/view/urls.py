"""Where the view and the task links point: Cloud Console, Cloud Logging, TensorBoard, the view.

Pure string functions; an empty string means "no link".
"""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "https://console.cloud.google.com"
VIEW_PREFIX = "tfdist"  # the plugin app's url prefix under the API server
VIEW_ROUTE = "training"


def console_url(path: str) -> str:
    """The Cloud Console page of a gs:// path (bucket or prefix); "" for other paths."""
    if not path.startswith("gs://"):
        return ""
    return f"{CONSOLE}/storage/browser/{quote(path.removeprefix('gs://').strip('/'))}"


def training_view_url(dag_id: str, run_id: str, anchor: str = "") -> str:
    """The Training view of a run, relative to the Airflow UI's base URL."""
    url = f"{VIEW_PREFIX}/{VIEW_ROUTE}/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    return f"{url}#{anchor}" if anchor else url


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
