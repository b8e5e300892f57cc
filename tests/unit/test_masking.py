"""`trainer.env` values are masked as soon as they are rendered: in the rendered fields Airflow
stores, in what the task logs, in the launch and the export task alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk._shared.secrets_masker import redact, reset_secrets_masker
from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

from tfdist.spec import parse_spec
from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.export import ExportModelOperator
from tfdist_airflow.masking import trainer_env_values
from tfdist_airflow.roles import LaunchRolesOperator

SECRET = "s3cr3t-token-5b1e"
LAUNCH = "train_and_evaluate.launch"


@pytest.fixture(autouse=True)
def fresh_masker() -> Iterator[None]:
    """Each test starts with a masker that knows no secret (it is one per process)."""
    reset_secrets_masker()
    yield
    reset_secrets_masker()


def test_every_trainer_env_value_is_found_whatever_path_sets_it() -> None:
    job = {"trainer": {"entrypoint": "m.trainer", "env": {"REGION": "europe-west4"}}}
    overrides = {
        "trainer.env.EXTRA": "token-1",
        "trainer.env": {"DB_PASSWORD": "password-2", "PORT": 5432},
        "trainer": {"entrypoint": "m.other", "env": {"KEY": "key-3"}},
        "trainer.entrypoint": "m.third",
        "train_spec.max_steps": 400,
        "model_dir": "/models",
    }

    values = trainer_env_values(job, overrides)

    assert values == ["europe-west4", "token-1", "password-2", "5432", "key-3"]


def test_values_of_an_override_that_is_not_valid_yet_are_found_too() -> None:
    """Masking runs before the spec is validated, so a bad override cannot skip it."""
    overrides = {"trainer.env": '{"EXTRA": "token-1"}', "trainer.env.X": ["a-list", None]}

    assert trainer_env_values({"trainer": "bad"}, overrides) == [
        '{"EXTRA": "token-1"}',
        "a-list",
    ]


def nightly(tmp_path: Path, **overrides: str) -> DAG:
    spec = parse_spec(
        {
            "name": "secure",
            "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"REGION": "eu-west"}},
            "cluster": {"worker": 1, "evaluator": 1},
            "train_spec": {"max_steps": 40},
            "model_dir": str(tmp_path),
        }
    )
    with DAG("secure", schedule=None, params={"token": SECRET}) as dag:
        training = train_and_evaluate(spec, overrides=overrides)
        gate_export_deploy(
            training, thresholds={}, serving_base=str(tmp_path / "serving"), model_name="m"
        )
    return dag


def context_of(dag: DAG) -> Any:
    return {"dag": dag, "run_id": "manual__1", "params": {"token": SECRET}}


def test_the_launch_task_masks_a_templated_trainer_env_value_when_rendering(
    tmp_path: Path,
) -> None:
    # A name Airflow does not hide by itself (it hides values of keys such as `*TOKEN*`).
    dag = nightly(tmp_path, **{"trainer.env.EXTRA": "{{ params.token }}"})
    launch = dag.get_task(LAUNCH)
    assert isinstance(launch, LaunchRolesOperator)
    assert redact(f"token {SECRET}") == f"token {SECRET}"  # nothing masked before rendering

    launch.render_template_fields(context_of(dag))

    assert launch.overrides == {"trainer.env.EXTRA": SECRET}  # execute gets the value
    # What the task runner sends to the API server as rendered_task_instance_fields:
    stored = _serialize_rendered_fields(launch)
    assert stored["overrides"] == {"trainer.env.EXTRA": "***"}
    assert SECRET not in str(stored)
    assert redact(f"role env EXTRA={SECRET}") == "role env EXTRA=***"  # task logs
    assert redact("region eu-west") == "region ***"  # the spec's own values as well


def test_the_export_task_masks_what_it_renders_again(tmp_path: Path) -> None:
    """The export task runs the trainer with the real `trainer.env`, rendered in its own
    process: it masks the values there as the launch task did in its process."""
    dag = nightly(tmp_path, **{"trainer.env.EXTRA": "{{ params.token }}"})
    export = dag.get_task("export")
    assert isinstance(export, ExportModelOperator)

    export.render_template_fields(context_of(dag))

    assert export.trainer_env() == {"REGION": "eu-west", "EXTRA": SECRET}
    stored = _serialize_rendered_fields(export)
    assert stored["trainer_overrides"] == {"trainer.env.EXTRA": "***"}
    assert redact(f"exporting with {SECRET}") == "exporting with ***"
