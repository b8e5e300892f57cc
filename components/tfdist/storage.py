"""File access for the orchestration side (gate, deploy): a small interface and its local backend.

Role processes do not use this; they go through TensorFlow's filesystems
(`tfdist.runtime.storage`). Paths are plain strings joined with `/`; `storage_for(path)` picks
the backend from the path's scheme: `gs://bucket/prefix` goes to `GcsStorage` (the `gcs`
extra; google-cloud-storage is imported only then).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.storage import Blob, Client

GCS_SCHEME = "gs://"
GCS_EXTRA = "pip install 'tfdist[gcs]'"
EMULATOR_PROJECT = "tfdist-emulator"
HTTP_POOL_SIZE = 32  # connections per client: above deploy's copy threads
CREATE_MARKER = "tfdist-create"  # object metadata that tells a create_exclusive its own object


class Storage(Protocol):
    """What the gate and the deployer need from a filesystem or an object store."""

    def read_text(self, path: str) -> str | None:
        """The file's text, or None when there is no such file."""
        ...

    def read_bytes(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        ...

    def write_text(self, path: str, text: str) -> None:
        """Create or replace a file; readers see the old or the new text, never a part."""
        ...

    def exists(self, path: str) -> bool:
        """Whether a file (an object, on object stores) exists at `path`."""
        ...

    def list(self, prefix: str) -> builtins.list[str]:
        """Every file below the directory `prefix`, recursively, as full paths, sorted."""
        ...

    def copy(self, src: str, dst: str) -> None:
        """Copy one file; `dst` appears complete or not at all."""
        ...

    def upload(self, local_path: str, dst: str) -> None:
        """Copy a file of this machine's disk to `dst`, which appears complete or not at all."""
        ...

    def download(self, src: str, local_path: str) -> None:
        """Copy `src` to this machine's disk; `local_path` appears complete or not at all."""
        ...

    def create_exclusive(self, path: str, text: str) -> bool:
        """Create the file only if it does not exist, atomically; False when it already did."""
        ...

    def delete(self, path: str) -> None:
        """Remove a file; nothing happens when it is missing."""
        ...


def join(base: str, *parts: str) -> str:
    """Join path parts with `/`, as on object stores."""
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])


class LocalStorage:
    """The local filesystem. Writes go to a temporary name in the same directory, then rename."""

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def write_text(self, path: str, text: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def exists(self, path: str) -> bool:
        return Path(path).is_file()

    def list(self, prefix: str) -> builtins.list[str]:
        root = Path(prefix)
        if not root.is_dir():
            return []
        base = prefix.rstrip("/")
        found: builtins.list[str] = []
        for directory, _, names in os.walk(root):
            relative = os.path.relpath(directory, root)
            inner = "" if relative == "." else f"{Path(relative).as_posix()}/"
            found.extend(
                f"{base}/{inner}{name}"
                for name in names
                if os.path.isfile(os.path.join(directory, name))
            )
        return sorted(found)

    def copy(self, src: str, dst: str) -> None:
        target = Path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        try:
            shutil.copyfile(src, temporary)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    upload = download = copy

    def create_exclusive(self, path: str, text: str) -> bool:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        return True

    def delete(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)


def split_gcs_path(path: str) -> tuple[str, str]:
    """`gs://bucket/some/name` -> `("bucket", "some/name")`; the name may be empty."""
    if not path.startswith(GCS_SCHEME):
        raise ValueError(
            f"{path}: not a gs:// path; Cloud Storage paths are gs://BUCKET/NAME (a deploy "
            "needs the export and the serving base both on gs:// or both local)"
        )
    bucket, _, name = path.removeprefix(GCS_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"{path}: no bucket name; write it as gs://BUCKET/PREFIX")
    return bucket, name


def _require_google() -> None:
    try:
        import google.cloud.storage  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "gs:// paths need google-cloud-storage, which is not installed; it comes with "
            f"the `gcs` extra ({GCS_EXTRA})"
        ) from error


def new_gcs_client(credentials: Credentials | None = None, project: str | None = None) -> Client:
    """A client with these credentials, else Application Default Credentials.

    Without credentials and with `STORAGE_EMULATOR_HOST` set, requests are anonymous and the
    project is `GOOGLE_CLOUD_PROJECT` or a placeholder.
    """
    _require_google()
    import requests.adapters
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if credentials is not None:
        client = storage.Client(project=project, credentials=credentials)
    elif os.environ.get("STORAGE_EMULATOR_HOST"):
        project = project or os.environ.get("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = storage.Client(project=project, credentials=anonymous)
    else:
        client = storage.Client(project=project)
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=HTTP_POOL_SIZE, pool_maxsize=HTTP_POOL_SIZE
    )
    for prefix in ("https://", "http://"):
        client._http.mount(prefix, adapter)
    return client


_clients: dict[tuple[int, str | None], Client] = {}
_clients_lock = threading.Lock()


def shared_gcs_client() -> Client:
    """One client per process (and per emulator address), made on first use."""
    key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = new_gcs_client()
        return _clients[key]


def _content_type(path: str) -> str:
    return "application/json" if path.endswith(".json") else "text/plain; charset=utf-8"


class GcsStorage:
    """Google Cloud Storage through google-cloud-storage, for `gs://bucket/name` paths.

    Copies are server-side rewrites: no object's bytes pass through this process. Object
    writes are single uploads, so readers see the old or the new object, never a part.

    :param client: a `google.cloud.storage.Client`, e.g. one built from an Airflow hook's
        credentials; default: one shared client with Application Default Credentials.
    """

    def __init__(self, client: Client | None = None) -> None:
        _require_google()
        self._client = client

    @property
    def client(self) -> Client:
        """The client given, or the shared one (made on first use: credentials load then)."""
        if self._client is None:
            self._client = shared_gcs_client()
        return self._client

    def _blob(self, path: str) -> Blob:
        bucket, name = split_gcs_path(path)
        if not name or name.endswith("/"):
            raise ValueError(f"{path}: names a directory, not an object")
        return self.client.bucket(bucket).blob(name)

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8")

    def read_bytes(self, path: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._blob(path).download_as_bytes()
        except NotFound:
            return None
        return data

    def write_text(self, path: str, text: str) -> None:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        try:  # the same bytes again: safe to retry
            self._blob(path).upload_from_string(
                text.encode("utf-8"), content_type=_content_type(path), retry=DEFAULT_RETRY
            )
        except NotFound as error:
            raise _no_bucket(path) from error

    def exists(self, path: str) -> bool:
        return bool(self._blob(path).exists())

    def list(self, prefix: str) -> builtins.list[str]:
        from google.api_core.exceptions import NotFound

        bucket, name = split_gcs_path(prefix)
        directory = f"{name.rstrip('/')}/" if name.strip("/") else ""
        try:
            names = [
                blob.name
                for blob in self.client.list_blobs(bucket, prefix=directory)
                if not blob.name.endswith("/")  # folder placeholders
            ]
        except NotFound as error:
            raise _no_bucket(prefix) from error
        return sorted(f"{GCS_SCHEME}{bucket}/{object_name}" for object_name in names)

    def copy(self, src: str, dst: str) -> None:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        source, target = self._blob(src), self._blob(dst)
        token: str | None = None
        try:
            while True:  # large or cross-location objects take several rewrite calls
                token, _, _ = target.rewrite(source, token=token, retry=DEFAULT_RETRY)
                if token is None:
                    return
        except NotFound as error:
            raise FileNotFoundError(
                f"copy {src} -> {dst}: not found (no such source object, or a bucket "
                "does not exist)"
            ) from error

    def upload(self, local_path: str, dst: str) -> None:
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        try:  # the same bytes again: safe to retry
            self._blob(dst).upload_from_filename(local_path, retry=DEFAULT_RETRY)
        except NotFound as error:
            raise _no_bucket(dst) from error

    def download(self, src: str, local_path: str) -> None:
        from google.api_core.exceptions import NotFound

        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        try:
            self._blob(src).download_to_filename(str(temporary))
            os.replace(temporary, target)
        except NotFound as error:
            raise FileNotFoundError(
                f"{src}: no such object, or its bucket does not exist"
            ) from error
        finally:
            temporary.unlink(missing_ok=True)

    def create_exclusive(self, path: str, text: str) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self._blob(path)
        marker = uuid.uuid4().hex
        blob.metadata = {CREATE_MARKER: marker}
        try:
            blob.upload_from_string(
                text.encode("utf-8"), content_type=_content_type(path), if_generation_match=0
            )
        except PreconditionFailed:
            # A retried upload whose first try went through also ends here: ours if marked.
            bucket, name = split_gcs_path(path)
            existing = self.client.bucket(bucket).get_blob(name)
            metadata = (existing.metadata if existing is not None else None) or {}
            return bool(metadata.get(CREATE_MARKER) == marker)
        except NotFound as error:
            raise _no_bucket(path) from error
        return True

    def delete(self, path: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._blob(path).delete()


def _no_bucket(path: str) -> FileNotFoundError:
    bucket, _ = split_gcs_path(path)
    return FileNotFoundError(f"{path}: bucket {bucket} does not exist")


def copier(source: Storage, target: Storage) -> Callable[[str, str], None]:
    """How to copy a file from `source` to `target`: a copy within one store (server-side on
    GCS), else an upload or a download through this machine."""
    if type(source) is type(target):
        return target.copy
    if isinstance(source, LocalStorage):
        return target.upload
    if isinstance(target, LocalStorage):
        return source.download
    raise TypeError(f"no way to copy from {type(source).__name__} to {type(target).__name__}")


def storage_for(path: str, gcs_client: Client | None = None) -> Storage:
    """The backend for `path`: `GcsStorage` for gs:// paths, `LocalStorage` for local ones.

    :param gcs_client: the client for gs:// paths; default: one shared client with
        Application Default Credentials.
    """
    if path.startswith(GCS_SCHEME):
        split_gcs_path(path)
        return GcsStorage(gcs_client)
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise ValueError(
            f"{path}: unsupported scheme {scheme!r}; use a local path or gs://BUCKET/PREFIX"
        )
    return LocalStorage()
