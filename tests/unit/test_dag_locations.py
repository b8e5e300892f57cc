"""The DAG builder refuses, while the DAG is parsed, a storage location no run could use;
templated values are left to the task that renders them (see `test_bad_input_table.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from airflow.sdk import DAG

from tfdist.locations import LocationError
from tfdist.spec import JobSpec, parse_spec
from tfdist_airflow import JobSetBackend, gate_export_deploy, train_and_evaluate
from tfdist_airflow.refusals import FAIL_AT_ONCE

ACCEPTED = "use a local path such as /data/models, or gs://BUCKET/PREFIX"


def job(model_dir: str = "/models", **changes: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "digits",
            "trainer": {"command": ["python", "train.py"]},
            "cluster": {"worker": 1, "evaluator": 1},
            "train_spec": {"max_steps": 10},
            "model_dir": model_dir,
            **changes,
        }
    )


def build(spec: JobSpec, serving_base: str = "/serving", **arguments: Any) -> DAG:
    with DAG(dag_id="refused", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        training = train_and_evaluate(spec, **arguments)
        gate_export_deploy(
            training, thresholds=None, serving_base=serving_base, model_name="digits"
        )
    return dag


@pytest.mark.parametrize(
    ("spec", "arguments", "message"),
    [
        pytest.param(
            job(),
            {"model_dir_base": "gs:/bucket/models"},
            "model_dir_base: 'gs:/bucket/models': starts like a URI (`gs:`) but is not one",
            id="malformed-base",
        ),
        pytest.param(
            job("models"),
            {},
            "model_dir: 'models' is a relative path, which would resolve against whichever "
            "directory the Airflow task runs in",
            id="relative-spec-model-dir",
        ),
        pytest.param(
            job(data_dir="data"),
            {},
            "data_dir: 'data' is a relative path",
            id="relative-data-dir",
        ),
        pytest.param(
            job(),
            {"serving_base": "serving"},
            "serving_base: 'serving' is a relative path",
            id="relative-serving-base",
        ),
        pytest.param(
            job(),
            {"serving_base": "s3://bucket/serving"},
            f"serving_base: 's3://bucket/serving': s3:// storage is not supported; {ACCEPTED}",
            id="serving-base-scheme",
        ),
        pytest.param(
            job(),
            {"backend": JobSetBackend(image="trainer:1"), "model_dir_base": "gs://bkt/m"},
            "serving_base: '/serving' is a local path, but on the jobset backend every pod "
            "has its own disk",
            id="jobset-local-serving-base",
        ),
        pytest.param(
            job(),
            {"backend": JobSetBackend(image="trainer:1")},
            "model_dir: '/models' is a local path, but on the jobset backend every pod has "
            "its own disk",
            id="jobset-local-model-dir",
        ),
    ],
)
def test_a_static_location_no_run_could_use_is_refused(
    spec: JobSpec, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(LocationError) as refused:
        build(spec, **arguments)
    assert str(refused.value).startswith(message)


def test_templated_locations_are_left_to_the_tasks() -> None:
    dag = build(
        job(),
        serving_base="gs://{{ params.bucket }}/serving",
        backend=JobSetBackend(image="trainer:1"),
        model_dir_base="gs://{{ params.bucket }}/models",
        overrides={"data_dir": "gs://{{ params.bucket }}/data"},
    )
    rendered = dag.task_dict["deploy"].before_launch(job(), {"params": {"bucket": "b"}})
    assert rendered == {"serving_base": "gs://b/serving"}  # checked by the launch, rendered
    for task_id in ("train_and_evaluate.launch", "gate", "deploy"):
        assert dag.task_dict[task_id].retry_policy is FAIL_AT_ONCE


def test_a_data_dir_override_replaces_the_specs_relative_one() -> None:
    """A spec file's relative `data_dir` (fine for `tfdist run`) with an absolute override in
    the DAG, as the bench DAG does; a relative override is refused as the spec's value is."""
    spec = job(data_dir="data")
    dag = build(spec, overrides={"data_dir": "/data/digits"})
    assert dag.task_dict["train_and_evaluate.launch"].overrides == {"data_dir": "/data/digits"}
    with pytest.raises(LocationError, match=r"^data_dir: 'shards' is a relative path"):
        build(spec, overrides={"data_dir": "shards"})
