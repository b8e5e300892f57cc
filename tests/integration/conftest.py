"""Fixtures shared by the tests that run real role processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
