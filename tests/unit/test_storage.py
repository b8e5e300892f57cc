"""LocalStorage on tmp_path, and the choice of backend by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdist.storage import GcsStorage, LocalStorage, join, storage_for


def test_write_read_exists_delete(tmp_path: Path) -> None:
    storage, path = LocalStorage(), f"{tmp_path}/a/b/c.json"
    assert storage.read_text(path) is None
    assert not storage.exists(path)
    storage.write_text(path, "one")
    storage.write_text(path, "two")
    assert storage.read_text(path) == "two"
    assert storage.read_bytes(path) == b"two"
    assert storage.read_bytes(f"{tmp_path}/missing") is None
    assert storage.exists(path)
    assert not storage.exists(f"{tmp_path}/a")  # a directory is not a file
    assert [p.name for p in Path(tmp_path, "a/b").iterdir()] == ["c.json"]  # no temporaries
    storage.delete(path)
    storage.delete(path)
    assert not storage.exists(path)


def test_list_is_recursive_sorted_and_files_only(tmp_path: Path) -> None:
    storage = LocalStorage()
    for name in ("b/2.txt", "a.txt", "b/c/3.txt"):
        storage.write_text(f"{tmp_path}/root/{name}", name)
    Path(tmp_path, "root/empty").mkdir()
    assert storage.list(f"{tmp_path}/root/") == [
        f"{tmp_path}/root/a.txt",
        f"{tmp_path}/root/b/2.txt",
        f"{tmp_path}/root/b/c/3.txt",
    ]
    assert storage.list(f"{tmp_path}/missing") == []


def test_copy_creates_parents(tmp_path: Path) -> None:
    storage = LocalStorage()
    storage.write_text(f"{tmp_path}/src", "data")
    storage.copy(f"{tmp_path}/src", f"{tmp_path}/x/y/dst")
    assert storage.read_text(f"{tmp_path}/x/y/dst") == "data"
    assert sorted(p.name for p in Path(tmp_path, "x/y").iterdir()) == ["dst"]


def test_create_exclusive_only_once(tmp_path: Path) -> None:
    storage, path = LocalStorage(), f"{tmp_path}/claims/1"
    assert storage.create_exclusive(path, "first")
    assert not storage.create_exclusive(path, "second")
    assert storage.read_text(path) == "first"


def test_join() -> None:
    assert join("gs://bucket/base/", "model", "/1/") == "gs://bucket/base/model/1"


def test_storage_for_local_path(tmp_path: Path) -> None:
    assert isinstance(storage_for(str(tmp_path)), LocalStorage)


def test_storage_for_gcs_is_the_gcs_backend() -> None:
    assert isinstance(storage_for("gs://bucket/serving"), GcsStorage)


def test_storage_for_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported scheme 's3'"):
        storage_for("s3://bucket/serving")
