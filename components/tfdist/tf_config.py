"""`TF_CONFIG`: build one per role, and parse one with `tf.estimator`'s rules and messages.

The rules and the wording of every error follow `tf.estimator.RunConfig` and
`train_and_evaluate` (the last estimator release), so a `TF_CONFIG` that tfdist accepts is one
the estimator would have accepted, and a rejected one fails with the message users know.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

CHIEF, WORKER, PS, EVALUATOR, MASTER = "chief", "worker", "ps", "evaluator", "master"
SUPPORTED_TASK_TYPES = (CHIEF, EVALUATOR, MASTER, PS, WORKER)

_NOTE = "\n\nNote that these values may be coming from the TF_CONFIG environment variable."


class TFConfigError(ValueError):
    """An invalid `TF_CONFIG`."""


class TFConfigTypeError(TFConfigError, TypeError):
    """A `TF_CONFIG` field of the wrong type (the estimator raised `TypeError` here)."""


class TFConfig(BaseModel):
    """A validated `TF_CONFIG`, as the role process sees it."""

    model_config = ConfigDict(frozen=True)

    task_type: str
    task_index: int
    cluster: dict[str, list[str]]
    mode: Literal["local", "distributed"]

    @property
    def is_chief(self) -> bool:
        """The chief (or legacy master) writes checkpoints and summaries; in local mode, we do."""
        return self.mode == "local" or self.task_type in (CHIEF, MASTER)

    @property
    def num_worker_replicas(self) -> int:
        """Processes that train: workers plus the chief (or master); local: 1, evaluator: 0."""
        if self.mode == "local":
            return 1
        chief = len(self.cluster.get(CHIEF, ())) + len(self.cluster.get(MASTER, ()))
        return len(self.cluster.get(WORKER, ())) + chief


def build_tf_config(
    cluster: Mapping[str, Sequence[str]], task_type: str, task_index: int
) -> dict[str, Any]:
    """The `TF_CONFIG` of one role. `cluster` must not hold the evaluator: it does not train."""
    if EVALUATOR in cluster:
        raise ValueError("the evaluator is not part of the training cluster; leave it out")
    return {
        "cluster": {job: list(addresses) for job, addresses in cluster.items() if addresses},
        "task": {"type": task_type, "index": task_index},
        "environment": "cloud",
    }


def _cluster_str(cluster: Mapping[str, Sequence[str]]) -> str:
    """As `str(tf.train.ClusterSpec(cluster))`: jobs sorted, an empty job shown as `{}`."""
    jobs = ", ".join(
        f"{job!r}: {list(addrs) if addrs else {}!r}" for job, addrs in sorted(cluster.items())
    )
    return "ClusterSpec({" + jobs + "})"


def _read_cluster(raw: Any) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TFConfigTypeError(f'"cluster" in TF_CONFIG must be a dict of job lists. Given {raw}')
    cluster: dict[str, list[str]] = {}
    for job, addresses in raw.items():
        if not isinstance(addresses, list | tuple) or not all(
            isinstance(a, str) for a in addresses
        ):
            raise TFConfigTypeError(
                f'job {job!r} in TF_CONFIG "cluster" must be a list of "host:port" strings. '
                f"Given {addresses!r}"
            )
        # An empty job still makes the cluster "set", as it does for `tf.train.ClusterSpec`.
        cluster[str(job)] = list(addresses)
    return cluster


def _task_index(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str | float):
        raise TFConfigTypeError(f"task index must be an integer. Given {raw!r}")
    try:
        return int(raw)  # "1" is accepted; "x" fails with "invalid literal for int() ..."
    except (ValueError, OverflowError) as error:
        raise TFConfigError(str(error)) from None


def _validate_task(
    cluster: dict[str, list[str]], task: Mapping[str, Any], chief_task_type: str
) -> tuple[str, int]:
    if not cluster.get(chief_task_type):
        raise TFConfigError(
            f'If "cluster" is set in TF_CONFIG, it must have one "{chief_task_type}" node.'
        )
    if len(cluster[chief_task_type]) > 1:
        raise TFConfigError(
            f'The "cluster" in TF_CONFIG must have only one "{chief_task_type}" node.'
        )
    task_type = task.get("type")
    task_index = task.get("index")
    if not task_type:
        raise TFConfigError('If "cluster" is set in TF_CONFIG, task type must be set.')
    if task_index is None:
        raise TFConfigError('If "cluster" is set in TF_CONFIG, task index must be set.')
    index = _task_index(task_index)
    if index < 0:
        raise TFConfigError("Task index must be non-negative number.")
    if task_type == EVALUATOR:  # not part of the training cluster: any index passes here
        return task_type, index
    if not isinstance(task_type, str) or task_type not in cluster:
        raise TFConfigError(
            f"{task_type} is not a valid task_type in the cluster_spec:\n"
            f"{_cluster_str(cluster)}{_NOTE}"
        )
    if not 0 <= index < len(cluster[task_type]):
        raise TFConfigError(
            f"{index} is not a valid task_id for task_type {task_type} in the cluster_spec:\n"
            f"{_cluster_str(cluster)}{_NOTE}"
        )
    return task_type, index


def parse_tf_config(raw: str | None) -> TFConfig:
    """Validate the text of a `TF_CONFIG` (None or empty: local mode) like the estimator does."""
    try:
        config = json.loads(raw) if raw and raw.strip() else {}
    except json.JSONDecodeError as error:
        raise TFConfigError(f"TF_CONFIG is not valid JSON: {error}") from None
    if not isinstance(config, Mapping):
        raise TFConfigTypeError(f"TF_CONFIG must be a JSON object. Given {config!r}")
    service = config.get("service")
    if service is not None and not isinstance(service, Mapping):
        raise TFConfigTypeError(
            f'If "service" is set in TF_CONFIG, it must be a dict. Given {type(service)}'
        )
    task = config.get("task") or {}
    if not isinstance(task, Mapping):
        raise TFConfigTypeError(f'"task" in TF_CONFIG must be a dict. Given {task!r}')
    cluster = _read_cluster(config.get("cluster"))

    if not cluster:
        task_type = task.get("type", WORKER)
        index = _task_index(task.get("index", 0))
        if task_type != WORKER:
            raise TFConfigError('If "cluster" is not set in TF_CONFIG, task type must be WORKER.')
        if index != 0:
            raise TFConfigError('If "cluster" is not set in TF_CONFIG, task index must be 0.')
        return TFConfig(task_type=WORKER, task_index=0, cluster={}, mode="local")

    if MASTER in cluster:
        if CHIEF in cluster:
            raise TFConfigError(
                "If `master` node exists in `cluster`, job `chief` is not supported."
            )
        task_type, index = _validate_task(cluster, task, MASTER)
        if task_type == EVALUATOR:
            raise TFConfigError(
                "If `master` node exists in `cluster`, task_type `evaluator` is not supported."
            )
    else:
        task_type, index = _validate_task(cluster, task, CHIEF)

    # The checks `train_and_evaluate` adds when it runs a distributed task.
    if task_type == EVALUATOR and index > 0:
        raise TFConfigError(
            "For distributed training, there can only be one `evaluator` task (with task id 0).  "
            f"Given task id {index}"
        )
    if task_type == "local":
        raise TFConfigError(
            "`task.type` in TF_CONFIG cannot be `local`. Leaving `cluster` and `task` properties "
            "in TF_CONFIG absent triggers train and evaluate `Estimator` locally (non-distributed)."
        )
    if task_type not in SUPPORTED_TASK_TYPES:
        raise TFConfigError(
            f"Task type {task_type} is not supported. Supported task types are "
            f"{list(SUPPORTED_TASK_TYPES)}"
        )
    if task_type == EVALUATOR:  # not part of the training cluster: it sees none, as in RunConfig
        cluster = {}
    return TFConfig(task_type=task_type, task_index=index, cluster=cluster, mode="distributed")
