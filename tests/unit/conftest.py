"""Every unit test runs in its own empty working directory: a test (or a mutant of the code
under test, in `make mutate`) that writes to a relative path leaves nothing for the next."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
