"""Preflight: a model directory that cannot be created or written is refused, naming the field,
the user and the fix; a gs:// one is probed with create, read, list and delete.

A local directory that exists but refuses writes even to root is `/sys` (sysfs creates no
regular files). Cloud Storage is a small in-memory stand-in behind the real `GcsStorage`
interface here; the same checks against the GCS emulator are in
`tests/integration/test_gcs_storage.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core.exceptions import Forbidden

from tfdist.preflight import PROBE_PREFIX, PreflightError, check_writable
from tfdist.storage import GcsStorage

UNWRITABLE_DIR = Path("/sys")


@pytest.mark.skipif(not UNWRITABLE_DIR.is_dir(), reason="needs Linux sysfs at /sys")
def test_an_existing_directory_that_refuses_writes_is_refused() -> None:
    with pytest.raises(PreflightError) as refused:
        check_writable(str(UNWRITABLE_DIR), field="serving_base")

    message = str(refused.value)
    assert message.startswith("cannot write into serving_base /sys as user ")
    assert message.endswith(
        ": Permission denied; fix the directory's permissions or choose another serving_base"
    )


def test_a_directory_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "model"

    with pytest.raises(PreflightError) as refused:
        check_writable(str(path))

    assert str(refused.value).startswith(f"cannot create model_dir {path} as user ")
    assert str(refused.value).endswith(
        ": Not a directory; choose a writable location or fix the parent directory's permissions"
    )


def test_a_file_in_place_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").write_text("")

    with pytest.raises(PreflightError, match=rf"^model_dir {tmp_path}/model exists and is not a"):
        check_writable(str(tmp_path / "model"))


def test_a_writable_directory_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()

    check_writable(str(tmp_path / "existing" / "a" / "model"))
    check_writable(str(tmp_path / "existing"))

    assert list(tmp_path.iterdir()) == [tmp_path / "existing"]
    assert list((tmp_path / "existing").iterdir()) == []


def test_an_unsupported_scheme_names_the_field() -> None:
    with pytest.raises(PreflightError, match=r"^serving_base s3://b/x: unsupported scheme 's3'"):
        check_writable("s3://b/x", field="serving_base")


# -- gs:// ------------------------------------------------------------------------------------


class MemoryGcs(GcsStorage):
    """Objects in a dict, every call in `calls`; `refuse` maps a method to the error it raises."""

    def __init__(self, refuse: dict[str, Exception] | None = None) -> None:
        client = SimpleNamespace(list_blobs=self._list_blobs, _credentials=None)
        super().__init__(client)  # type: ignore[arg-type]
        self.objects: dict[str, str] = {}
        self.calls: list[str] = []
        self.refuse = refuse or {}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.refuse:
            raise self.refuse[name]

    def create_exclusive(self, path: str, text: str) -> bool:
        self._call("create")
        if path in self.objects:
            return False
        self.objects[path] = text
        return True

    def read_text(self, path: str) -> str | None:
        self._call("read")
        return self.objects.get(path)

    def _list_blobs(self, bucket: str, prefix: str, max_results: int) -> Iterator[Any]:
        self._call("list")
        names = sorted(p.removeprefix(f"gs://{bucket}/") for p in self.objects)
        return iter([SimpleNamespace(name=n) for n in names if n.startswith(prefix)][:max_results])

    def delete(self, path: str) -> None:
        self._call("delete")
        self.objects.pop(path, None)


def test_a_writable_bucket_is_probed_with_each_permission_and_left_clean() -> None:
    gcs = MemoryGcs()

    check_writable("gs://bucket/models/run-1", gcs)

    assert gcs.calls == ["create", "read", "list", "delete"]
    assert gcs.objects == {}


def test_the_probe_object_is_named_under_the_path() -> None:
    gcs = MemoryGcs(refuse={"delete": Forbidden("no delete")})

    with pytest.raises(PreflightError) as refused:
        check_writable("gs://bucket/models/run-1", gcs)

    [probe] = gcs.objects
    assert probe.startswith(f"gs://bucket/models/run-1/{PROBE_PREFIX}")
    assert str(refused.value).endswith(f"(the probe {probe} is left behind)")


@pytest.mark.parametrize(
    ("step", "permission", "calls"),
    [
        ("create", "storage.objects.create", ["create"]),
        ("read", "storage.objects.get", ["create", "read", "delete"]),
        ("list", "storage.objects.list", ["create", "read", "list", "delete"]),
    ],
)
def test_a_refused_step_names_the_missing_permission_and_removes_the_probe(
    step: str, permission: str, calls: list[str]
) -> None:
    gcs = MemoryGcs(refuse={step: Forbidden(f"no {step}")})

    with pytest.raises(PreflightError) as refused:
        check_writable("gs://bucket/models", gcs, field="model_dir")

    assert str(refused.value).startswith(
        f"unknown credentials may not {step} objects in gs://bucket (model_dir gs://bucket/"
        f"models): missing permission {permission}; grant it roles/storage.objectAdmin"
    )
    assert gcs.calls == calls
    assert gcs.objects == {}


def test_a_probe_that_cannot_be_read_back_is_refused() -> None:
    gcs = MemoryGcs()
    gcs.read_text = lambda path: None  # type: ignore[method-assign]

    with pytest.raises(PreflightError, match="but could not read it back"):
        check_writable("gs://bucket/models", gcs)

    assert gcs.objects == {}
