"""Cloud Storage credentials from an Airflow connection's extras, and how the DAG helpers
hand the connection and the serving base to the launch task's preflight."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from tfdist.spec import load_spec
from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.gcp import STORAGE_SCOPE, GcpConnectionError, credentials_from_extras
from tfdist_airflow.roles import LaunchRolesOperator

REPO = Path(__file__).resolve().parents[2]
EMAIL = "trainer@tfdist-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def key_info() -> dict[str, str]:
    """A service account key as the console downloads it, with a fresh RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def test_keyfile_dict_as_json_text_with_the_storage_scope(key_info: dict[str, str]) -> None:
    credentials, project = credentials_from_extras("gcs", {"keyfile_dict": json.dumps(key_info)})
    assert credentials.service_account_email == EMAIL
    assert credentials.scopes == [STORAGE_SCOPE]
    assert project == "key-project"


def test_key_path_with_the_legacy_prefix_scopes_and_project(
    key_info: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key_info))
    extras = {
        "extra__google_cloud_platform__key_path": str(key_file),
        "extra__google_cloud_platform__scope": "https://a/x, https://a/y",
        "project": "conn-project",
    }
    credentials, project = credentials_from_extras("gcs", extras)
    assert credentials.service_account_email == EMAIL
    assert credentials.scopes == ["https://a/x", "https://a/y"]
    assert project == "conn-project"


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"key_path": "/k.json", "keyfile_dict": "{}"}, "set key_path or keyfile_dict, not both"),
        ({"key_secret_name": "k"}, "key_secret_name is not supported here"),
        ({"impersonation_chain": "a@b"}, "impersonation_chain is not supported here"),
        ({"key_path": "/no/such/key.json"}, "cannot read the key file key_path=/no/such/key.json"),
        ({"keyfile_dict": '{"type": "service_account"}'}, "keyfile_dict is not a service account"),
    ],
)
def test_bad_connections_name_the_field(extras: dict[str, Any], message: str) -> None:
    with pytest.raises(GcpConnectionError, match=message) as raised:
        credentials_from_extras("my_gcs", extras)
    assert str(raised.value).startswith("connection my_gcs: ")


def test_a_connection_without_a_key_and_no_adc_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(GcpConnectionError, match=r"connection my_gcs has no key .* no Application"):
        credentials_from_extras("my_gcs", {"project": "p"})


def test_gate_export_deploy_preflights_the_serving_base_with_the_groups_connection() -> None:
    with DAG(dag_id="wiring", schedule=None):
        training = train_and_evaluate(
            REPO / "dags" / "specs" / "digits.yaml",
            model_dir_base="gs://{{ params.bucket }}/models",
            gcp_conn_id="ml_gcs",
        )
        gate, export, deploy = gate_export_deploy(
            training,
            thresholds={"accuracy": {"min": 0.9}},
            serving_base="gs://{{ params.bucket }}/serving",
            model_name="digits",
        )
    launch = training.group.children["train_and_evaluate.launch"]
    assert isinstance(launch, LaunchRolesOperator)
    spec = load_spec(REPO / "dags" / "specs" / "digits.yaml")
    later = launch._later_needs(spec, {"params": {"bucket": "b"}})
    assert later == {"serving_base": "gs://b/serving"}  # the launch preflights it
    assert (launch.gcp_conn_id, gate.gcp_conn_id, deploy.gcp_conn_id) == ("ml_gcs",) * 3
    assert export.launch_task_id == launch.task_id
