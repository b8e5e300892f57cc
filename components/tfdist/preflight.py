"""Preflight: before any role starts, prove that the run can write its model directory.

`check_writable(path)` writes, reads back, lists and deletes a small probe object
(`<path>/.tfdist-preflight-<id>`), and raises `PreflightError` naming the bucket (or
directory), the credential and what is missing: a bucket that does not exist, or the IAM
permission a request was refused. It leaves nothing behind: local directories it had to create
for the probe are removed again, so a launch refused later finds the disk as it was.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfdist.storage import GCS_SCHEME, GcsStorage, Storage, join, split_gcs_path, storage_for

PROBE_PREFIX = ".tfdist-preflight-"
FIX_ROLE = (
    "grant it roles/storage.objectAdmin on the bucket (or a role with storage.objects.create, "
    "get, list and delete)"
)


class PreflightError(ValueError):
    """The model directory cannot be used; the message says which, as whom, and the fix.

    `transient`: Cloud Storage could not be reached, so a later try may succeed.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def check_writable(path: str, storage: Storage | None = None, *, field: str = "model_dir") -> None:
    """Raise `PreflightError` unless the run can create, read, list and delete under `path`.

    :param storage: the backend to check with; default: `storage_for(path)` (for gs://
        paths, Application Default Credentials).
    :param field: what `path` is, for the messages, e.g. `serving_base`.
    """
    if path.startswith(GCS_SCHEME):
        _check_gcs(path, storage, field)
    elif "://" in path:
        try:
            storage_for(path)
        except ValueError as error:
            raise PreflightError(f"{field} {error}") from None
    else:
        _check_local(path, field)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.geteuid()}"


def _missing(directory: Path) -> list[Path]:
    """`directory` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _check_local(path: str, field: str) -> None:
    directory = Path(path).absolute()
    created = _missing(directory)
    try:
        _probe_local(directory, path, field)
    finally:
        for made in created:  # deepest first; a directory someone filled meanwhile stays
            try:
                made.rmdir()
            except OSError:
                break


def _probe_local(directory: Path, path: str, field: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PreflightError(f"{field} {path} exists and is not a directory") from None
    except OSError as error:
        raise PreflightError(
            f"cannot create {field} {path} as user {_user()}: {error.strerror or error}; "
            "choose a writable location or fix the parent directory's permissions"
        ) from None
    probe = directory / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        probe.write_text("tfdist preflight\n")
        probe.unlink()
    except OSError as error:
        raise PreflightError(
            f"cannot write into {field} {path} as user {_user()}: {error.strerror or error}; "
            f"fix the directory's permissions or choose another {field}"
        ) from None


def credential_identity(client: Any) -> str:
    """Who the client acts as, as far as its credentials tell."""
    credentials = getattr(client, "_credentials", None)
    if credentials is None:
        return "unknown credentials"
    kind = type(credentials)
    if kind.__name__ == "AnonymousCredentials":
        return "anonymous credentials"
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and email and email != "default":
        return f"service account {email}"
    account = getattr(credentials, "account", None)
    if isinstance(account, str) and account:
        return f"user {account}"
    return f"application default credentials ({kind.__module__}.{kind.__name__})"


def _check_gcs(path: str, storage: Storage | None, field: str) -> None:
    try:
        bucket, _ = split_gcs_path(path)
        gcs = storage if isinstance(storage, GcsStorage) else GcsStorage()
    except (ValueError, ImportError) as error:
        raise PreflightError(f"{field} {error}") from None
    from google.auth.exceptions import DefaultCredentialsError

    try:
        client = gcs.client
    except DefaultCredentialsError as error:
        raise PreflightError(
            f"{field} {path}: no Application Default Credentials found ({error}). On GKE "
            "bind the Airflow worker's service account with Workload Identity; elsewhere run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None
    probe = join(path, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    created = False

    def create() -> None:
        nonlocal created
        created = gcs.create_exclusive(probe, "tfdist preflight\n")

    def read() -> None:
        if gcs.read_text(probe) is None:
            raise PreflightError(f"{field} {path}: wrote {probe} but could not read it back")

    def list_() -> None:
        _, name = split_gcs_path(probe)
        if not [blob.name for blob in client.list_blobs(bucket, prefix=name, max_results=1)]:
            raise PreflightError(f"{field} {path}: wrote {probe} but listing does not show it")

    steps: list[tuple[str, str, Callable[[], None]]] = [
        ("create objects in", "storage.objects.create", create),
        ("read objects in", "storage.objects.get", read),
        ("list objects in", "storage.objects.list", list_),
        ("delete objects in", "storage.objects.delete", lambda: gcs.delete(probe)),
    ]
    for action, permission, step in steps:
        try:
            step()
        except PreflightError:
            _remove_quietly(gcs, probe)
            raise
        except Exception as error:
            who = credential_identity(client)
            problem, transient = _explain(error, field, path, bucket, action, permission, who)
            if permission == "storage.objects.delete":
                problem += f" (the probe {probe} is left behind)"
            elif created:
                _remove_quietly(gcs, probe)
            raise PreflightError(problem, transient=transient) from error


def _explain(
    error: Exception, field: str, path: str, bucket: str, action: str, permission: str, who: str
) -> tuple[str, bool]:
    """The message for a failed probe step, and whether a later try may succeed."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(error, FileNotFoundError | api.NotFound):
        return f"bucket {bucket} does not exist; create it or fix {field} ({path})", False
    if isinstance(error, api.Forbidden):
        return (
            f"{who} may not {action} gs://{bucket} ({field} {path}): missing permission "
            f"{permission}; {FIX_ROLE}. Cloud Storage said: {error.message}"
        ), False
    if isinstance(error, api.Unauthorized | auth.RefreshError):
        return (
            f"Cloud Storage rejected the credentials of {who} ({field} {path}): {error}; "
            "check the service account key or Workload Identity binding"
        ), False
    if isinstance(error, auth.TransportError | OSError):  # requests' errors are OSErrors
        return f"cannot reach Cloud Storage to check {field} {path} as {who}: {error}", True
    return f"cannot {action} gs://{bucket} as {who} ({field} {path}): {error}", True


def _remove_quietly(gcs: GcsStorage, probe: str) -> None:
    try:
        gcs.delete(probe)
    except Exception:  # the error being reported matters more than a leftover probe
        return
