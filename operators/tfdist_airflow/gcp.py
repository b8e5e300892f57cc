"""Cloud Storage clients from an Airflow Google Cloud connection (`gcp_conn_id`).

Reads the connection the way the Google provider documents it, without needing that
provider: extras `key_path` (a service account key file on the worker) or `keyfile_dict`
(the key's JSON), `project`, and `scope` (comma-separated; default: read/write on Cloud
Storage). Extras may also carry the `extra__google_cloud_platform__` prefix. A connection
with no key uses Application Default Credentials. This covers only what the operators
read and write (eval records, blessings, deployed versions): role processes authenticate
on their own (Workload Identity on GKE, `GOOGLE_APPLICATION_CREDENTIALS` in `trainer.env`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud.storage import Client

    from tfdist.storage import Storage

STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
LEGACY_PREFIX = "extra__google_cloud_platform__"
UNSUPPORTED = ("key_secret_name", "credential_config_file", "impersonation_chain")


class GcpConnectionError(ValueError):
    """The connection cannot give Cloud Storage credentials; the message says why and the fix."""


def _field(extras: Mapping[str, Any], name: str) -> Any:
    value = extras.get(name)
    return value if value not in (None, "") else extras.get(f"{LEGACY_PREFIX}{name}") or None


def credentials_from_extras(conn_id: str, extras: Mapping[str, Any]) -> tuple[Any, str | None]:
    """`(credentials, project)` for a Google Cloud connection's extras."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.oauth2 import service_account

    unsupported = [name for name in UNSUPPORTED if _field(extras, name)]
    if unsupported:
        raise GcpConnectionError(
            f"connection {conn_id}: {', '.join(unsupported)} is not supported here; use "
            "key_path, keyfile_dict, or no key for Application Default Credentials"
        )
    key_path, keyfile = _field(extras, "key_path"), _field(extras, "keyfile_dict")
    if key_path and keyfile:
        raise GcpConnectionError(f"connection {conn_id}: set key_path or keyfile_dict, not both")
    scope = _field(extras, "scope")
    scopes = [s.strip() for s in scope.split(",") if s.strip()] if scope else [STORAGE_SCOPE]
    project = _field(extras, "project")
    if key_path:
        try:
            credentials = service_account.Credentials.from_service_account_file(
                key_path, scopes=scopes
            )
        except (OSError, ValueError) as error:
            raise GcpConnectionError(
                f"connection {conn_id}: cannot read the key file key_path={key_path}: {error}"
            ) from None
    elif keyfile:
        try:
            info = json.loads(keyfile) if isinstance(keyfile, str) else dict(keyfile)
            credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        except ValueError as error:
            raise GcpConnectionError(
                f"connection {conn_id}: keyfile_dict is not a service account key: {error}"
            ) from None
    else:
        try:
            credentials, default_project = google.auth.default(scopes=scopes)
        except DefaultCredentialsError as error:
            raise GcpConnectionError(
                f"connection {conn_id} has no key (key_path or keyfile_dict) and no Application "
                f"Default Credentials were found: {error}"
            ) from None
        return credentials, project or default_project
    return credentials, project or credentials.project_id


def gcs_client(gcp_conn_id: str | None) -> Client | None:
    """A client for the connection, or None (meaning: Application Default Credentials)."""
    if gcp_conn_id is None:
        return None
    from airflow.sdk import BaseHook

    from tfdist.storage import new_gcs_client

    connection = BaseHook.get_connection(gcp_conn_id)
    credentials, project = credentials_from_extras(gcp_conn_id, connection.extra_dejson)
    return new_gcs_client(credentials, project)


def storages(gcp_conn_id: str | None) -> Callable[[str], Storage]:
    """The storage backend of each path a task touches: gs:// paths share one client with the
    connection's credentials, made on first use (local paths never read the connection)."""
    from tfdist.storage import GCS_SCHEME, storage_for

    client: Client | None = None

    def storage(path: str) -> Storage:
        nonlocal client
        if client is None and path.startswith(GCS_SCHEME):
            client = gcs_client(gcp_conn_id)
        return storage_for(path, client)

    return storage
