"""The parse-cost baseline: `dags/nightly_retrain.py`'s shape, every task an EmptyOperator.

Same DAG arguments and params, same task ids, the same `train_and_evaluate` group (setup
`launch`, `watch` mapped over the five roles with the role as map index, teardown `stop`),
the same dependencies. Only the operators differ. Not in `dags/`: the bench loads it by path.
"""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup

ROLES = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]

with DAG(
    dag_id="nightly_retrain_empty_shape",
    schedule="@daily",
    catchup=False,
    max_active_runs=3,
    params={
        "max_steps": Param(400, type="integer", minimum=1, description="training steps"),
        "min_accuracy": Param(0.9, type="number", description="gate: accuracy >= this"),
        "max_loss": Param(0.5, type="number", description="gate: loss <= this"),
    },
    tags=["tfdist", "example"],
    doc_md=__doc__,
):
    prepare_data = EmptyOperator(task_id="prepare_data")
    with TaskGroup(group_id="train_and_evaluate", tooltip="train and evaluate digits") as group:
        launch = EmptyOperator(task_id="launch")
        watch = EmptyOperator.partial(
            task_id="watch", retries=2, map_index_template="{{ task.doc }}"
        ).expand(doc=ROLES)
        stop = EmptyOperator(task_id="stop")
        launch >> watch >> stop.as_teardown(setups=launch)
    prepare_data >> group
    gate = EmptyOperator(task_id="gate")
    export = EmptyOperator(task_id="export")
    deploy = EmptyOperator(task_id="deploy")
    group >> gate >> export >> deploy
