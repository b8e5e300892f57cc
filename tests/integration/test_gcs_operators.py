"""The operators' side of gs:// against the GCS emulator: credentials from an Airflow
connection, and the serving base's preflight.

The connection's service account key is real (a fresh RSA key); its `token_uri` points at a
small OAuth token endpoint on 127.0.0.1 that grants any signed assertion, since Google's
cannot be reached here. Cloud Storage's IAM is played by `IamDenyingProxy`.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gcs_emulator import EMULATOR_ENV, GcsEmulator, IamDenyingProxy

from tfdist.storage import LocalStorage
from tfdist_airflow.gcp import gcs_client, storages
from tfdist_airflow.refusals import InputRefused

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EMAIL = "airflow-worker@tfdist-test.iam.gserviceaccount.com"
NOW = 1_700_000_000.0


class TokenEndpoint:
    """An OAuth 2.0 token endpoint that grants every JWT-bearer assertion a fixed token."""

    token = "emulated-access-token"

    def __init__(self) -> None:
        self.grants: list[str] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                form = self.rfile.read(int(self.headers["Content-Length"])).decode()
                endpoint.grants.append(urllib.parse.parse_qs(form)["grant_type"][0])
                data = json.dumps(
                    {"access_token": endpoint.token, "expires_in": 3600, "token_type": "Bearer"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def connection(token_endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection `ml_gcs` (from the environment) holding a service account key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    keyfile = {
        "type": "service_account",
        "project_id": "tfdist-test",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": token_endpoint.url,
    }
    extra = {"keyfile_dict": json.dumps(keyfile), "project": "tfdist-test"}
    conn = {"conn_type": "google_cloud_platform", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_ML_GCS", json.dumps(conn))
    return "ml_gcs"


def test_a_connections_service_account_reads_and_writes(
    gcs: GcsEmulator,
    bucket: str,
    connection: str,
    token_endpoint: TokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with IamDenyingProxy(gcs.url, deny=lambda method, path: False) as proxy:
        monkeypatch.setenv(EMULATOR_ENV, proxy.url)
        storage = storages(connection)
        storage(f"gs://{bucket}/models").write_text(f"gs://{bucket}/models/a.txt", "model")
        granted = len(token_endpoint.grants)
        storage(f"gs://{bucket}/serving").write_text(f"gs://{bucket}/serving/b.txt", "serving")
    assert gcs.objects(bucket) == {"models/a.txt": b"model", "serving/b.txt": b"serving"}
    assert token_endpoint.grants[-1] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert len(token_endpoint.grants) == granted  # one client and token for every gs:// path
    assert set(proxy.authorizations) == {f"Bearer {TokenEndpoint.token}"}


def test_no_connection_means_application_default_credentials(gcs: GcsEmulator) -> None:
    assert gcs_client(None) is None
    assert isinstance(storages("ml_gcs")("/local/models"), LocalStorage)


def test_the_launch_preflight_names_the_connections_service_account(
    gcs: GcsEmulator,
    bucket: str,
    connection: str,
    launch_operator: LaunchFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deny_reads_in_serving(method: str, path: str) -> bool:
        return method == "GET" and "/serving/" in urllib.parse.unquote(path)

    with IamDenyingProxy(gcs.url, deny=deny_reads_in_serving) as proxy:
        monkeypatch.setenv(EMULATOR_ENV, proxy.url)
        launch = launch_operator(
            tmp_path,
            model_dir_base=f"gs://{bucket}/models",
            serving_base=f"gs://{bucket}/serving",
            gcp_conn_id=connection,
        )
        with pytest.raises(InputRefused) as error:
            launch.execute(context())
    assert str(error.value).startswith(
        f"service account {EMAIL} may not read objects in gs://{bucket} (serving_base "
        f"gs://{bucket}/serving): missing permission storage.objects.get"
    )
    assert proxy.denied
    assert not (tmp_path / "runs").exists()  # no role was started


def test_the_launch_preflight_fails_for_a_serving_base_in_a_missing_bucket(
    gcs: GcsEmulator, bucket: str, launch_operator: LaunchFactory, tmp_path: Path
) -> None:
    launch = launch_operator(
        tmp_path,
        model_dir_base=f"gs://{bucket}/models",
        serving_base="gs://tfdist-no-serving-bucket/serving",
    )
    with pytest.raises(InputRefused) as error:
        launch.execute(context())
    assert str(error.value) == (
        "bucket tfdist-no-serving-bucket does not exist; create it or fix serving_base "
        "(gs://tfdist-no-serving-bucket/serving)"
    )
    assert not (tmp_path / "runs").exists()


def test_the_launch_task_runs_the_preflight_before_any_role(
    gcs: GcsEmulator, launch_operator: LaunchFactory, tmp_path: Path
) -> None:
    launch = launch_operator(tmp_path, model_dir_base="gs://tfdist-missing-bucket/models")
    with pytest.raises(InputRefused, match="bucket tfdist-missing-bucket does not exist"):
        launch.execute(context())
    assert not (tmp_path / "runs").exists()


LaunchFactory = Callable[..., Any]


@pytest.fixture
def launch_operator() -> Iterator[LaunchFactory]:
    """Makes launch tasks; whatever one of them started is stopped after the test."""
    from tfdist.spec import load_spec
    from tfdist_airflow.roles import LaunchRolesOperator

    made: list[LaunchRolesOperator] = []

    def make(tmp_path: Path, serving_base: str | None = None, **kwargs: Any) -> LaunchRolesOperator:
        """A launch task; with `serving_base`, a deploy task after it in its DAG."""
        from airflow.sdk import DAG

        from tfdist_airflow.deploy import DeployModelOperator

        spec = load_spec(REPO / "dags" / "specs" / "digits.yaml")
        with DAG("nightly_retrain_gcs", schedule=None):
            launch = LaunchRolesOperator(
                task_id="launch",
                job=spec.model_dump(mode="json"),
                backend={"kind": "local", "run_root": str(tmp_path / "runs")},
                group_id="train_and_evaluate",
                **kwargs,
            )
            if serving_base is not None:
                launch >> DeployModelOperator(
                    task_id="deploy",
                    gate_task_id="gate",
                    export_task_id="export",
                    serving_base=serving_base,
                    model_name="digits",
                )
        made.append(launch)
        return launch

    yield make
    for launch in made:
        launch.on_kill()


def context() -> Any:
    """What the launch task reads of its context."""
    ti = SimpleNamespace(xcom_push=lambda key, value: None)
    return {"dag": SimpleNamespace(dag_id="nightly_retrain_gcs"), "run_id": "manual__1", "ti": ti}
