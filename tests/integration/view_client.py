"""Requests the Training view through Airflow's own API server app with FastAPI's test client.

Run in a fresh interpreter with an Airflow home's environment (see test_training_view_ui.py):
`python view_client.py <dag_id> <run_id>`. Prints one JSON line: the status of each request,
the view's JSON, the page's HTML, the extra links of a role, the gate and the deploy task, and
the heavy modules the API server process had loaded.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import quote

from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

HEAVY = ("tensorflow", "keras")
LINKED_TASKS = {"train_and_evaluate.watch": {"map_index": 0}, "gate": {}, "deploy": {}}


def main(dag_id: str, run_id: str) -> None:
    client = TestClient(create_app())
    path = f"training/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    page, data = f"/tfdist/{path}", f"/tfdist/api/{path}"
    files = f"/tfdist/files/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    versions = f"/tfdist/history/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    manager = get_auth_manager()
    admin = manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))
    nobody = manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))
    as_admin = {"Authorization": f"Bearer {admin}"}
    to_login = client.get(page, follow_redirects=False)
    statuses = {
        "anonymous": to_login.status_code,
        "anonymous_files": client.get(files, follow_redirects=False).status_code,
        "anonymous_json": client.get(data).status_code,
        "bad_token": client.get(page, headers={"Authorization": "Bearer not-a-jwt"}).status_code,
        "no_role": client.get(page, headers={"Authorization": f"Bearer {nobody}"}).status_code,
        "unknown_run": client.get(f"/tfdist/training/{dag_id}/nope", headers=as_admin).status_code,
    }
    view = client.get(data, headers=as_admin)
    client.cookies.set("_token", admin)  # as the UI's frame sends it
    html = client.get(page)
    listed = client.get(files)
    history = client.get(versions)
    loaded = sorted(
        name for name in sys.modules if any(name == h or name.startswith(f"{h}.") for h in HEAVY)
    )
    statuses.update(
        admin_json=view.status_code,
        cookie_page=html.status_code,
        cookie_files=listed.status_code,
        cookie_history=history.status_code,
    )
    run = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    links = {
        task: client.get(f"{run}/{task}/links", params=params, headers=as_admin).json()
        for task, params in LINKED_TASKS.items()
    }
    print(
        json.dumps(
            {
                "statuses": statuses,
                "view": view.json(),
                "html": html.text,
                "files": listed.text,
                "history": history.text,
                "login": to_login.headers.get("location", ""),
                "page_url": str(to_login.request.url),
                "links": links,
                "heavy": loaded,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
