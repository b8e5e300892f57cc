"""`python -m bench --smoke`: every benchmark item runs once at its smallest size, so a change
that breaks a benchmark fails here. Its figures mean nothing at that size and are not judged."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from airflow_home import REPO

pytestmark = pytest.mark.integration

ITEMS = {"1", "2", "3", "4", "5", "6", "7", "9", "10", "11", "12"}  # 8 needs a GPU


@pytest.mark.timeout(1500)
def test_every_benchmark_item_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    table = output[output.index("== tfdist benchmarks") :]
    rows = re.findall(r"^(\d+)[a-z]? *\| (.+?) \|", table, re.M)
    assert {item for item, _ in rows} >= ITEMS, table
    assert not [figure for _, figure in rows if "(failed)" in figure], table
