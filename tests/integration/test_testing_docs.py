"""docs/testing-dags.md's example, run as it is written there: its DAG file in a DAGs folder,
pytest on its test, in an Airflow home of its own (SQLite, migrated), as a user's suite would
run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_home import REPO, AirflowHome

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_the_documented_dag_test_passes(tmp_path: Path) -> None:
    page = (REPO / "docs" / "testing-dags.md").read_text()
    dag_code, test_code = re.findall(r"```python\n(.*?)```", page, re.S)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "my_dag.py").write_text(dag_code)
    test_file = tmp_path / "test_my_dag.py"
    test_file.write_text(test_code)
    home = AirflowHome(tmp_path)
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(tmp_path / "dags")
    home.env["PYTHONPATH"] = f"{tmp_path / 'dags'}:{home.env['PYTHONPATH']}"
    home.migrate()

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        env=home.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
