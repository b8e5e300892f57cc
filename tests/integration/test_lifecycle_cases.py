"""The same role faults through `tfdist run` and through Airflow, from one table of cases
(`dags/lifecycle_faults.py`): one restart policy, the same outcome, restarts and words.

Airflow runs them with `airflow dags test` (one task at a time, triggers inline), on a real
Airflow with SQLite; `tfdist run` as a user would. Roles run a small program, no TensorFlow.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from airflow_home import AirflowHome
from jobtools import assert_no_process_left, latest_run_dir, run_tfdist

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"


def _table() -> ModuleType:
    found = importlib.util.spec_from_file_location("lifecycle_faults", DAGS / "lifecycle_faults.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules["lifecycle_faults"] = module  # its dataclasses look their module up
    found.loader.exec_module(module)
    return module


TABLE = _table()
CASES = {case.name: case for case in TABLE.CASES}


def tries(model_dir: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in model_dir.glob("*.tries")}


def expected_tries(name: str) -> dict[str, int]:
    case = CASES[name]
    roles = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]
    started = {role: case.tries.get(role, 1) for role in roles}
    if not case.succeeds:  # the roles stopped with the job may not all have started yet
        started = {role: n for role, n in started.items() if role in case.faults}
    return started


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    home = AirflowHome(tmp_path_factory.mktemp("faults"))
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.migrate()
    return home


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(CASES))
def test_tfdist_run(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    model_dir = tmp_path / "model"
    spec = TABLE.spec(case, str(model_dir))

    # `kill-after-chief` reads the supervisor's record under the run root.
    env = {**os.environ, "TFDIST_RUN_ROOT": str(tmp_path / "runs")}
    result = run_tfdist(spec, tmp_path, timeout=100, env=env)

    output = result.stdout + result.stderr
    assert result.returncode == (0 if case.succeeds else 1), output[-4000:]
    for words in case.says:
        assert words in result.stderr, output[-4000:]
    got = tries(model_dir)
    assert {role: got[role] for role in expected_tries(name)} == expected_tries(name), got
    assert_no_process_left(latest_run_dir(tmp_path, spec["name"]))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(CASES))
def test_airflow(name: str, home: AirflowHome) -> None:
    from tfdist_airflow.runs import run_model_dir

    case = CASES[name]
    dag_id = f"tfdist_fault_{name}"
    result = home.dags_test(dag_id, {})
    output = result.stdout + result.stderr

    run_id, state = home.runs(dag_id)[-1]
    assert state == ("success" if case.succeeds else "failed"), output[-4000:]
    rows = {row.rendered_map_index or row.task_id: row for row in home.tasks(dag_id, run_id)}
    if case.failed_role is not None:
        failed = rows[case.failed_role]
        assert (failed.state, failed.try_number) == ("failed", 1)  # no retry, no retry delay
        assert "AirflowFailException" in output
        for words in case.says:
            assert words in output, output[-4000:]
    model_dir = Path(run_model_dir(str(home.base_dir / "models"), dag_id, run_id))
    got = tries(model_dir)
    assert {role: got[role] for role in expected_tries(name)} == expected_tries(name), got
    assert rows["train_and_evaluate.stop"].state == ("success" if case.succeeds else "failed")
    for run_dir in (home.root / "runs").glob(f"{dag_id}/*/*/*"):
        assert_no_process_left(run_dir)
