"""`nightly_retrain_gcs` end to end on a real GCS emulator: every byte lives in gs:// buckets.

Airflow (`dags test`, SQLite) reads and writes through google-cloud-storage and
`STORAGE_EMULATOR_HOST`; the role processes and the export use TensorFlow's own gs:// client,
routed to the same emulator by `TfGcsProxy`. Checkpoints, eval records, the blessing, the
export and the deployed versions are then read back from the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from airflow_home import AirflowHome
from gcs_emulator import EMULATOR_ENV, GcsEmulator
from gcs_tls_proxy import TfGcsProxy

pytestmark = pytest.mark.integration

DAG_ID = "nightly_retrain_gcs"
FAST = {"max_steps": 200}


@pytest.fixture(scope="module")
def airflow(
    emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowHome]:
    home = AirflowHome(tmp_path_factory.mktemp("nightly-gcs"))
    with TfGcsProxy(emulator.url) as proxy:
        home.env.update({EMULATOR_ENV: emulator.url, **proxy.env()})
        home.migrate()
        yield home


def latest_model_prefix(home: AirflowHome) -> str:
    from tfdist_airflow.runs import run_model_dir

    return run_model_dir("tfdist/models", DAG_ID, home.runs(DAG_ID)[-1][0]) + "/"


def test_two_nightly_runs_train_gate_export_and_deploy_on_gcs(
    emulator: GcsEmulator, airflow: AirflowHome
) -> None:
    bucket = emulator.new_bucket()
    first = airflow.dags_test(DAG_ID, {**FAST, "bucket": bucket})
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert airflow.runs(DAG_ID)[-1][1] == "success"

    model_dir = emulator.objects(bucket, latest_model_prefix(airflow))
    assert {"ckpt-200.index", "checkpoint", "tfdist/train-done.json"} <= set(model_dir)
    assert any(name.startswith("eval/events.out.tfevents") for name in model_dir)
    record = json.loads(model_dir["eval/record-000000000200.json"])
    assert record["global_step"] == 200 and 0 < record["metrics"]["accuracy"] <= 1
    blessing = json.loads(model_dir["blessing/blessing.json"])
    assert blessing["blessed"] is True and blessing["baseline"] is None
    assert "blessing/BLESSED" in model_dir
    exported = {name.split("/", 2)[-1] for name in model_dir if name.startswith("export/")}
    assert {"saved_model.pb", "variables/variables.index"} <= exported

    serving = emulator.objects(bucket, "tfdist/serving/digits/")
    version_1 = {name.removeprefix("1/") for name in serving if name.startswith("1/")}
    assert exported <= version_1
    assert json.loads(serving["1/tfdist-deployment.json"])["version"] == 1

    # Wider than the run-to-run noise of two 200-step models, so this run is blessed against v1.
    second = airflow.dags_test(DAG_ID, {**FAST, "bucket": bucket, "max_accuracy_drop": 0.5})
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    blessing = json.loads(
        emulator.objects(bucket, latest_model_prefix(airflow))["blessing/blessing.json"]
    )
    assert blessing["baseline"]["version"] == 1
    assert blessing["thresholds"]["accuracy"]["change"]["absolute"] == -0.5
    assert blessing["blessed"] is True, blessing["reasons"]
    after = emulator.objects(bucket, "tfdist/serving/digits/")
    assert json.loads(after["2/tfdist-deployment.json"])["version"] == 2
    assert {name: after[name] for name in serving} == serving  # version 1 untouched


def test_a_missing_bucket_fails_the_launch_before_any_role_starts(airflow: AirflowHome) -> None:
    result = airflow.dags_test(DAG_ID, {**FAST, "bucket": "tfdist-no-such-bucket"})
    assert airflow.runs(DAG_ID)[-1][1] == "failed"
    tasks = {row.task_id: row for row in airflow.tasks(DAG_ID)}
    assert tasks["train_and_evaluate.launch"].state == "failed"
    assert tasks["train_and_evaluate.watch"].state in (None, "upstream_failed")
    assert "tfdist-no-such-bucket" in result.stdout + result.stderr
    assert "does not exist" in result.stdout + result.stderr
