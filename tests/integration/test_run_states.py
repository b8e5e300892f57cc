"""A model that is not blessed: the run stays green and export and deploy end skipped, each
saying why; with `fail_when_not_blessed` the gate fails and so does the run.

`airflow dags test` on DAGs of `tests/integration/dags/reliability.py`, whose evaluator writes
a poor final record without TensorFlow. (A run marked failed while training is in
`test_backfill.py`, with the scheduler.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_home import AirflowHome

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"
REASON = "not blessed: accuracy 0.5 is below min 0.9"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    home = AirflowHome(tmp_path_factory.mktemp("states"))
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.migrate()
    return home


@pytest.mark.timeout(300)
def test_a_model_not_blessed_leaves_the_run_green_and_says_why_on_the_skipped_tasks(
    home: AirflowHome,
) -> None:
    from tfdist_airflow.runs import run_model_dir

    dag_id = "tfdist_not_blessed"
    result = home.dags_test(dag_id, {})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run_id, state = home.runs(dag_id)[-1]
    assert state == "success"
    states = {row.task_id: row.state for row in home.tasks(dag_id)}
    assert (states["gate"], states["export"], states["deploy"]) == ("success", "skipped", "skipped")
    model_dir = run_model_dir(str(home.base_dir / "models"), dag_id, run_id)
    why = f"{REASON}; the blessing is in {model_dir}/blessing"
    # Each skipped task ran: its log says why, first as a warning, then as the skip reason.
    for verb, module in (("exported", "export"), ("deployed", "deploy")):
        assert f"[warning  ] not {verb}: {why} [tfdist_airflow.{module}]" in result.stdout
        assert f"reason='not {verb}: {why}'" in result.stdout
    assert not (home.base_dir / "serving" / "gated").exists()


@pytest.mark.timeout(300)
def test_fail_when_not_blessed_fails_the_gate_and_the_run(home: AirflowHome) -> None:
    dag_id = "tfdist_not_blessed_fails"
    result = home.dags_test(dag_id, {})

    assert home.runs(dag_id)[-1][1] == "failed", result.stdout[-3000:]
    states = {row.task_id: row.state for row in home.tasks(dag_id)}
    assert (states["gate"], states["export"], states["deploy"]) == (
        "failed",
        "upstream_failed",
        "upstream_failed",
    )
    assert states["train_and_evaluate.stop"] == "success"
    assert f"AirflowFailException: {REASON} (fail_when_not_blessed)" in result.stdout
