"""File access for the orchestration side (gate, deploy): a small interface and its local backend.

Role processes do not use this; they go through TensorFlow's filesystems
(`tfdist.runtime.storage`). Paths are plain strings joined with `/`; `storage_for(path)` picks
the backend from the path's scheme.
"""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Protocol

GCS_SCHEME = "gs://"


class Storage(Protocol):
    """What the gate and the deployer need from a filesystem or an object store."""

    def read_text(self, path: str) -> str | None:
        """The file's text, or None when there is no such file."""
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
            return Path(path).read_text()
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
        return sorted(
            f"{base}/{file.relative_to(root).as_posix()}"
            for file in root.rglob("*")
            if file.is_file()
        )

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


def storage_for(path: str) -> Storage:
    """The backend for `path`: local paths now; `gs://` comes with the `gcs` extra."""
    if path.startswith(GCS_SCHEME):
        raise NotImplementedError(
            f"{path}: gs:// paths need the GCS storage backend of the `gcs` extra "
            "(pip install 'tfdist[gcs]'), which this version does not provide yet; "
            "use a local path for now"
        )
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise ValueError(
            f"{path}: unsupported scheme {scheme!r}; use a local path (or gs:// with the "
            "`gcs` extra)"
        )
    return LocalStorage()
