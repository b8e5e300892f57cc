"""DAGs that the reliability tests run through a real scheduler (`test_backfill.py`).

- `tfdist_backfill`: a two-role all-reduce job (`plain_trainer.py`: TensorFlow, gRPC on loopback)
  that the tests backfill three dates at once; `trainer.env` carries a credential that must
  not leak.
- `tfdist_hold`: roles that only wait, to be killed or marked failed while they run; a task
  after the step stands for the gate (the leaf by which Airflow would judge the run).
- `tfdist_sized`: a job sized per run (`params.workers`), of roles that print and end.
- `tfdist_relaunch`: a chief that kills its launch task's process once every role started
  (as an OOM or a lost worker would; the task's first try waits for it after launching),
  then runs until the launch task's retry found it.
- `tfdist_not_blessed` and `tfdist_not_blessed_fails`: an evaluator that writes a poor final
  record (no TensorFlow), then gate, export and deploy; the second with `fail_when_not_blessed`.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from tfdist.spec import JobSpec, parse_spec
from tfdist_airflow import gate_export_deploy, train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
PLAIN_TRAINER = str(Path(__file__).parents[1] / "plain_trainer.py")
# A line a second after `started`, so that a watch task's trigger always has lines to show.
WAITS = """
import time
print("started", flush=True)
for _ in range(600):
    time.sleep(1)
    print("waiting", flush=True)
"""
# The evaluator writes its record of the final checkpoint (step 5): accuracy 0.5.
EVALUATES = """
import json, os, pathlib
if json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "evaluator":
    eval_dir = pathlib.Path(os.environ["MODEL_DIR"], "eval")
    eval_dir.mkdir(parents=True, exist_ok=True)
    record = {"global_step": 5, "metrics": {"accuracy": 0.5}, "checkpoint_path": "ckpt-5",
              "timestamp": 0.0, "eval_steps": 1}
    (eval_dir / "record-000000000005.json").write_text(json.dumps(record))
"""

# The chief kills the process of the launch task that started it (its supervisor's parent)
# once every role started, only once and only an Airflow process; then it runs until
# something (the launch task's retry) holds the launch's supervision record.
KILLS_ITS_LAUNCH = """
import json, os, pathlib, signal, time, psutil
if json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "chief":
    supervisor = psutil.Process(os.getppid())
    argv = supervisor.cmdline()
    run_dir = pathlib.Path(argv[argv.index("--exit-file") + 1]).parent
    roles = json.loads((run_dir / "handle.json").read_text())["roles"]
    while not all((run_dir / f"{role}.pid").exists() for role in roles):
        time.sleep(0.1)
    launch_task = supervisor.parent()
    marker = pathlib.Path(os.environ["MODEL_DIR"], "killed-the-launch-task")
    marker.parent.mkdir(parents=True, exist_ok=True)
    print("the launch task:", launch_task and launch_task.cmdline(), flush=True)
    if launch_task and launch_task.pid != 1 and not marker.exists():
        marker.touch()
        launch_task.kill()
        print("killed the launch task", flush=True)
    for _ in range(600):
        if (run_dir / "supervision.lock").exists():
            break
        time.sleep(0.2)
print("done", flush=True)
"""


def hold_the_first_launch(context: Any, result: Any) -> None:
    """The first try of a launch task waits, after it started the roles, to be killed."""
    ti = context["ti"]
    if ti.task_id.endswith(".launch") and ti.try_number == 1:
        time.sleep(120)


def job(name: str, command: list[str], cluster: dict[str, int], **env: str) -> JobSpec:
    return parse_spec(
        {
            "name": name,
            "trainer": {"command": command, "env": env},
            "cluster": cluster,
            "train_spec": {"max_steps": 5},
            "model_dir": f"{BASE_DIR}/models",
        }
    )


with DAG(
    dag_id="tfdist_backfill",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    end_date=datetime(2026, 1, 31),  # no scheduled run of its own: only what is backfilled
    catchup=False,
    max_active_runs=3,
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        job(
            "backfill",
            ["python", PLAIN_TRAINER],
            {"worker": 1},
            TFDIST_TEST_TOKEN=os.environ.get("TFDIST_TEST_TOKEN", "unset"),
        ),
        poll_interval=1.0,
    )

with DAG(
    dag_id="tfdist_hold",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["tfdist", "test"],
):
    held = train_and_evaluate(
        job("hold", ["python", "-c", WAITS], {"worker": 1, "evaluator": 1}), poll_interval=1.0
    )
    held >> EmptyOperator(task_id="after_training")

for dag_id, fails in (("tfdist_not_blessed", False), ("tfdist_not_blessed_fails", True)):
    with DAG(dag_id=dag_id, schedule=None, catchup=False, tags=["tfdist", "test"]):
        gate_export_deploy(
            train_and_evaluate(
                job("gated", ["python", "-c", EVALUATES], {"evaluator": 1}), poll_interval=1.0
            ),
            thresholds={"accuracy": {"min": 0.9}},
            serving_base=f"{BASE_DIR}/serving",
            model_name="gated",
            fail_when_not_blessed=fails,
        )

with DAG(
    dag_id="tfdist_sized",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    end_date=datetime(2026, 1, 31),  # no scheduled run of its own: what is triggered
    catchup=False,
    max_active_runs=2,
    params={"workers": Param(1, type="integer", minimum=0)},
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        job("sized", ["python", "-c", "print('trained', flush=True)"], {"worker": 1}),
        overrides={"cluster.worker": "{{ params.workers }}"},
        poll_interval=1.0,
    )

with DAG(
    dag_id="tfdist_relaunch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=1),
        "post_execute": hold_the_first_launch,
    },
    tags=["tfdist", "test"],
):
    train_and_evaluate(
        job("relaunch", ["python", "-c", KILLS_ITS_LAUNCH], {"worker": 1}), poll_interval=1.0
    )
