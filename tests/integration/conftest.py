"""Fixtures shared by the tests that run real role processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcs_emulator import EMULATOR_ENV, GcsEmulator, running_emulator


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The digits shards, written once for every job of the session."""
    from tfdist.examples import digits

    return digits.prepare_data(str(tmp_path_factory.mktemp("digits-data")))


@pytest.fixture
def scratch_tmpdir(tmp_path: Path) -> dict[str, str]:
    """An environment whose TMPDIR is a fresh directory, to see what roles leave in it."""
    tmpdir = tmp_path / "role-tmp"
    tmpdir.mkdir()
    return {**os.environ, "TMPDIR": str(tmpdir)}


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    """A GCS emulator for the tests of one module."""
    with running_emulator() as server:
        yield server


@pytest.fixture
def gcs(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """The emulator, with `STORAGE_EMULATOR_HOST` set for this test only."""
    monkeypatch.setenv(EMULATOR_ENV, emulator.url)
    return emulator


@pytest.fixture
def bucket(gcs: GcsEmulator) -> str:
    """A new, empty bucket on the emulator."""
    return gcs.new_bucket()
