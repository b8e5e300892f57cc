"""`TF_CONFIG`: parsing follows `tf.estimator.RunConfig` and `train_and_evaluate`; building."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tfdist.tf_config import (
    TFConfig,
    TFConfigError,
    TFConfigTypeError,
    build_tf_config,
    parse_tf_config,
)

CHIEF = ["chief:2222"]
WORKERS = ["worker0:2222", "worker1:2222"]
PS = ["ps0:2222"]
CLUSTER: dict[str, list[str]] = {"chief": CHIEF, "worker": WORKERS, "ps": PS}
CLUSTER_STR = (
    "ClusterSpec({'chief': ['chief:2222'], 'ps': ['ps0:2222'], "
    "'worker': ['worker0:2222', 'worker1:2222']})"
)
NOTE = "\n\nNote that these values may be coming from the TF_CONFIG environment variable."


def tf_config(cluster: Any = None, task_type: Any = None, index: Any = None, **extra: Any) -> str:
    """The text of a `TF_CONFIG`; `None` leaves a key out."""
    task = {k: v for k, v in (("type", task_type), ("index", index)) if v is not None}
    config: dict[str, Any] = dict(extra)
    if cluster is not None:
        config["cluster"] = cluster
    if task:
        config["task"] = task
    return json.dumps(config)


def starts_with(message: str) -> str:
    """A `match` pattern for an error message that begins with `message`."""
    return "^" + re.escape(message)


# --- valid configs -------------------------------------------------------------------------------

VALID = [
    # (TF_CONFIG text, task_type, task_index, cluster, mode)
    pytest.param(None, "worker", 0, {}, "local", id="unset"),
    pytest.param("", "worker", 0, {}, "local", id="empty-string"),
    pytest.param("  \n", "worker", 0, {}, "local", id="blank"),
    pytest.param("{}", "worker", 0, {}, "local", id="empty-object"),
    pytest.param(
        tf_config(task_type="worker", index=0), "worker", 0, {}, "local", id="worker0-no-cluster"
    ),
    pytest.param(
        tf_config(task_type="worker", index="0"),
        "worker",
        0,
        {},
        "local",
        id="worker-index-str0-no-cluster",
    ),
    pytest.param(
        tf_config(cluster={}, task_type="worker", index=0),
        "worker",
        0,
        {},
        "local",
        id="cluster-empty-dict",
    ),
    pytest.param(
        '{"task": null, "cluster": null}', "worker", 0, {}, "local", id="task-and-cluster-null"
    ),
    pytest.param(
        tf_config(environment="cloud", service={"a": 1}),
        "worker",
        0,
        {},
        "local",
        id="service-dict-local",
    ),
    pytest.param(tf_config(CLUSTER, "chief", 0), "chief", 0, CLUSTER, "distributed", id="chief0"),
    pytest.param(
        tf_config(CLUSTER, "worker", 0), "worker", 0, CLUSTER, "distributed", id="worker0"
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", 1), "worker", 1, CLUSTER, "distributed", id="worker1"
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", "1"),
        "worker",
        1,
        CLUSTER,
        "distributed",
        id="worker-index-str1",
    ),
    pytest.param(tf_config(CLUSTER, "ps", 0), "ps", 0, CLUSTER, "distributed", id="ps0"),
    pytest.param(
        tf_config(CLUSTER, "evaluator", 0),
        "evaluator",
        0,
        {},
        "distributed",
        id="evaluator0-not-in-cluster",
    ),
    pytest.param(
        tf_config(CLUSTER, "evaluator", "0"),
        "evaluator",
        0,
        {},
        "distributed",
        id="evaluator-index-str0",
    ),
    pytest.param(
        tf_config({**CLUSTER, "evaluator": ["eval:2222"]}, "evaluator", 0),
        "evaluator",
        0,
        {},
        "distributed",
        id="evaluator0-job-in-cluster",
    ),
    pytest.param(
        tf_config({**CLUSTER, "evaluator": ["eval:2222"]}, "chief", 0),
        "chief",
        0,
        {**CLUSTER, "evaluator": ["eval:2222"]},
        "distributed",
        id="chief0-with-evaluator-job-in-cluster",
    ),
    pytest.param(
        tf_config({"chief": CHIEF}, "chief", 0),
        "chief",
        0,
        {"chief": CHIEF},
        "distributed",
        id="only-chief",
    ),
    pytest.param(
        tf_config({"chief": CHIEF, "worker": []}, "chief", 0),
        "chief",
        0,
        {"chief": CHIEF, "worker": []},
        "distributed",
        id="chief0-empty-worker-job",
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "worker": WORKERS, "ps": PS}, "master", 0),
        "master",
        0,
        {"master": ["m:1"], "worker": WORKERS, "ps": PS},
        "distributed",
        id="legacy-master0",
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "worker": WORKERS, "ps": PS}, "worker", 1),
        "worker",
        1,
        {"master": ["m:1"], "worker": WORKERS, "ps": PS},
        "distributed",
        id="legacy-master-worker1",
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "worker": WORKERS, "ps": PS}, "ps", 0),
        "ps",
        0,
        {"master": ["m:1"], "worker": WORKERS, "ps": PS},
        "distributed",
        id="legacy-master-ps0",
    ),
    pytest.param(
        tf_config(CLUSTER, "chief", 0, service={"x": 1}, environment="cloud"),
        "chief",
        0,
        CLUSTER,
        "distributed",
        id="service-dict-distributed",
    ),
]


@pytest.mark.parametrize(("text", "task_type", "task_index", "cluster", "mode"), VALID)
def test_valid(
    text: str | None, task_type: str, task_index: int, cluster: dict[str, list[str]], mode: str
) -> None:
    """Each valid `TF_CONFIG` gives the role and cluster `RunConfig` would use."""
    config = parse_tf_config(text)
    assert (config.task_type, config.task_index, config.cluster, config.mode) == (
        task_type,
        task_index,
        cluster,
        mode,
    )


ROLE_FACTS = [
    # (TF_CONFIG text, is_chief, num_worker_replicas)
    pytest.param(None, True, 1, id="local"),
    pytest.param(tf_config(CLUSTER, "chief", 0), True, 3, id="chief"),
    pytest.param(tf_config(CLUSTER, "worker", 1), False, 3, id="worker"),
    pytest.param(tf_config(CLUSTER, "ps", 0), False, 3, id="ps"),
    pytest.param(tf_config(CLUSTER, "evaluator", 0), False, 0, id="evaluator"),
    pytest.param(
        tf_config({**CLUSTER, "evaluator": ["e:1"]}, "chief", 0),
        True,
        3,
        id="evaluator-job-not-counted",
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "worker": WORKERS}, "master", 0), True, 3, id="master"
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "worker": WORKERS}, "worker", 0), False, 3, id="master-worker"
    ),
]


@pytest.mark.parametrize(("text", "is_chief", "replicas"), ROLE_FACTS)
def test_chief_and_worker_replicas(text: str | None, is_chief: bool, replicas: int) -> None:
    """`is_chief` and `num_worker_replicas` match `RunConfig`'s (evaluator: not chief, 0)."""
    config = parse_tf_config(text)
    assert config.is_chief is is_chief
    assert config.num_worker_replicas == replicas


def test_config_is_frozen() -> None:
    config = parse_tf_config(tf_config(CLUSTER, "chief", 0))
    with pytest.raises(ValueError, match="frozen"):
        config.task_index = 1  # type: ignore[misc]


# --- invalid configs: the estimator's messages ---------------------------------------------------

NO_CLUSTER_TYPE = 'If "cluster" is not set in TF_CONFIG, task type must be WORKER.'
NO_CLUSTER_INDEX = 'If "cluster" is not set in TF_CONFIG, task index must be 0.'
NEED_CHIEF = 'If "cluster" is set in TF_CONFIG, it must have one "chief" node.'
ONE_CHIEF = 'The "cluster" in TF_CONFIG must have only one "chief" node.'
NEED_TYPE = 'If "cluster" is set in TF_CONFIG, task type must be set.'
NEED_INDEX = 'If "cluster" is set in TF_CONFIG, task index must be set.'
NEGATIVE = "Task index must be non-negative number."
ONE_EVALUATOR = (
    "For distributed training, there can only be one `evaluator` task (with task id 0).  "
    "Given task id 1"
)
NEED_MASTER = 'If "cluster" is set in TF_CONFIG, it must have one "master" node.'
ONE_MASTER = 'The "cluster" in TF_CONFIG must have only one "master" node.'
MASTER_AND_CHIEF = "If `master` node exists in `cluster`, job `chief` is not supported."
MASTER_EVALUATOR = "If `master` node exists in `cluster`, task_type `evaluator` is not supported."
SERVICE = 'If "service" is set in TF_CONFIG, it must be a dict. Given '

MASTER_CLUSTER = {"master": ["m:1"], "worker": WORKERS}

INVALID = [
    # (TF_CONFIG text, start of the message)
    pytest.param(tf_config(task_type="chief", index=0), NO_CLUSTER_TYPE, id="no-cluster-chief"),
    pytest.param(
        tf_config(task_type="evaluator", index=0), NO_CLUSTER_TYPE, id="no-cluster-evaluator"
    ),
    pytest.param(tf_config(task_type="master", index=0), NO_CLUSTER_TYPE, id="no-cluster-master"),
    pytest.param(tf_config(task_type="ps"), NO_CLUSTER_TYPE, id="no-cluster-ps-no-index"),
    pytest.param(tf_config(task_type="worker", index=1), NO_CLUSTER_INDEX, id="no-cluster-worker1"),
    pytest.param(
        tf_config(task_type="worker", index="1"), NO_CLUSTER_INDEX, id="no-cluster-worker-str1"
    ),
    pytest.param(tf_config(index=-1), NO_CLUSTER_INDEX, id="no-cluster-index-negative"),
    pytest.param(
        tf_config(task_type="worker", index="x"),
        "invalid literal for int() with base 10: 'x'",
        id="no-cluster-index-non-numeric",
    ),
    pytest.param(tf_config({"worker": WORKERS}, "worker", 0), NEED_CHIEF, id="no-chief"),
    pytest.param(tf_config({"ps": PS}, "ps", 0), NEED_CHIEF, id="no-chief-ps"),
    pytest.param(
        tf_config({"worker": WORKERS}, "evaluator", 0), NEED_CHIEF, id="no-chief-evaluator"
    ),
    pytest.param(
        tf_config({"worker": []}, "worker", 0), NEED_CHIEF, id="only-empty-job-is-still-a-cluster"
    ),
    pytest.param(
        tf_config({"chief": [], "worker": WORKERS}, "worker", 0), NEED_CHIEF, id="empty-chief-job"
    ),
    pytest.param(tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), ONE_CHIEF, id="two-chiefs"),
    pytest.param(tf_config(CLUSTER), NEED_TYPE, id="task-missing"),
    pytest.param(tf_config(CLUSTER, index=0), NEED_TYPE, id="task-type-missing"),
    pytest.param(tf_config(CLUSTER, "", 0), NEED_TYPE, id="task-type-empty"),
    pytest.param(tf_config(CLUSTER, "worker"), NEED_INDEX, id="task-index-missing"),
    pytest.param(tf_config(CLUSTER, "evaluator"), NEED_INDEX, id="evaluator-index-missing"),
    pytest.param(tf_config(CLUSTER, "worker", -1), NEGATIVE, id="worker-index-negative"),
    pytest.param(tf_config(CLUSTER, "chief", -1), NEGATIVE, id="chief-index-negative"),
    pytest.param(tf_config(CLUSTER, "ps", -2), NEGATIVE, id="ps-index-negative"),
    pytest.param(tf_config(CLUSTER, "evaluator", -1), NEGATIVE, id="evaluator-index-negative"),
    pytest.param(tf_config(CLUSTER, "worker", "-1"), NEGATIVE, id="index-str-negative"),
    pytest.param(
        tf_config(CLUSTER, "worker", "x"),
        "invalid literal for int() with base 10: 'x'",
        id="index-non-numeric",
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", "1.5"),
        "invalid literal for int() with base 10: '1.5'",
        id="index-str-float",
    ),
    pytest.param(
        tf_config(CLUSTER, "evaluator", "one"),
        "invalid literal for int() with base 10: 'one'",
        id="evaluator-index-non-numeric",
    ),
    pytest.param(
        '{"cluster": {"chief": ["c:1"]}, "task": {"type": "chief", "index": Infinity}}',
        "cannot convert float infinity to integer",
        id="index-infinity",
    ),
    pytest.param(
        tf_config({"chief": CHIEF, "worker": WORKERS}, "ps", 0),
        "ps is not a valid task_type in the cluster_spec:\n"
        "ClusterSpec({'chief': ['chief:2222'], 'worker': ['worker0:2222', 'worker1:2222']})" + NOTE,
        id="ps-not-in-cluster",
    ),
    pytest.param(
        tf_config(CLUSTER, "local", 0),
        "local is not a valid task_type in the cluster_spec:\n" + CLUSTER_STR + NOTE,
        id="local-not-in-cluster",
    ),
    pytest.param(
        tf_config(CLUSTER, "foo", 0),
        "foo is not a valid task_type in the cluster_spec:\n" + CLUSTER_STR + NOTE,
        id="foo-not-in-cluster",
    ),
    pytest.param(
        tf_config(CLUSTER, ["worker"], 0),
        "['worker'] is not a valid task_type in the cluster_spec:",
        id="task-type-list",
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", 2),
        "2 is not a valid task_id for task_type worker in the cluster_spec:\n" + CLUSTER_STR + NOTE,
        id="worker-index-past-end",
    ),
    pytest.param(
        tf_config(CLUSTER, "chief", 1),
        "1 is not a valid task_id for task_type chief in the cluster_spec:\n" + CLUSTER_STR,
        id="chief1",
    ),
    pytest.param(
        tf_config(CLUSTER, "ps", 1),
        "1 is not a valid task_id for task_type ps in the cluster_spec:\n" + CLUSTER_STR,
        id="ps-index-past-end",
    ),
    pytest.param(
        tf_config({"chief": CHIEF, "worker": []}, "worker", 0),
        "0 is not a valid task_id for task_type worker in the cluster_spec:\n"
        "ClusterSpec({'chief': ['chief:2222'], 'worker': {}})",
        id="empty-worker-job",
    ),
    pytest.param(tf_config(CLUSTER, "evaluator", 1), ONE_EVALUATOR, id="evaluator1"),
    pytest.param(tf_config(CLUSTER, "evaluator", "1"), ONE_EVALUATOR, id="evaluator-str1"),
    pytest.param(
        tf_config({**CLUSTER, "evaluator": ["e:1", "f:1"]}, "evaluator", 1),
        ONE_EVALUATOR,
        id="evaluator1-job-in-cluster",
    ),
    pytest.param(
        tf_config({**CLUSTER, "local": ["l:1"]}, "local", 0),
        "`task.type` in TF_CONFIG cannot be `local`. Leaving `cluster` and `task` properties in "
        "TF_CONFIG absent triggers train and evaluate `Estimator` locally (non-distributed).",
        id="local-in-cluster",
    ),
    pytest.param(
        tf_config({**CLUSTER, "foo": ["f:1"]}, "foo", 0),
        "Task type foo is not supported. "
        "Supported task types are ['chief', 'evaluator', 'master', 'ps', 'worker']",
        id="custom-job-foo",
    ),
    pytest.param(
        tf_config({"master": ["m:1"], "chief": CHIEF}, "master", 0),
        MASTER_AND_CHIEF,
        id="master-and-chief",
    ),
    pytest.param(tf_config({"master": ["m:1", "n:1"]}, "master", 0), ONE_MASTER, id="two-masters"),
    pytest.param(
        tf_config({"master": [], "worker": WORKERS}, "worker", 0),
        NEED_MASTER,
        id="empty-master-job",
    ),
    pytest.param(
        tf_config(MASTER_CLUSTER, "evaluator", 0), MASTER_EVALUATOR, id="master-evaluator"
    ),
    pytest.param(
        tf_config(MASTER_CLUSTER, "evaluator", 1), MASTER_EVALUATOR, id="master-evaluator1"
    ),
    pytest.param(
        tf_config(MASTER_CLUSTER, "chief", 0),
        "chief is not a valid task_type in the cluster_spec:\n"
        "ClusterSpec({'master': ['m:1'], 'worker': ['worker0:2222', 'worker1:2222']})",
        id="master-cluster-chief-task",
    ),
    pytest.param(
        tf_config(MASTER_CLUSTER, "master", 1),
        "1 is not a valid task_id for task_type master in the cluster_spec:",
        id="master1",
    ),
    pytest.param(tf_config(MASTER_CLUSTER, "master"), NEED_INDEX, id="master-index-missing"),
    pytest.param(
        tf_config({**MASTER_CLUSTER, "foo": ["f:1"]}, "foo", 0),
        "Task type foo is not supported.",
        id="master-custom-job-foo",
    ),
    pytest.param("not json", "TF_CONFIG is not valid JSON", id="not-json"),
    pytest.param('{"cluster": ', "TF_CONFIG is not valid JSON", id="truncated-json"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid(text: str, message: str) -> None:
    """Each invalid `TF_CONFIG` raises `ValueError` with the estimator's message."""
    with pytest.raises(TFConfigError, match=starts_with(message)) as caught:
        parse_tf_config(text)
    assert isinstance(caught.value, ValueError)


WRONG_TYPES = [
    # (TF_CONFIG text, start of the message)
    pytest.param(tf_config(service="grpc://x"), SERVICE + "<class 'str'>", id="service-str"),
    pytest.param(tf_config(service=[1]), SERVICE + "<class 'list'>", id="service-list"),
    pytest.param(
        tf_config(CLUSTER, "chief", 0, service=3),
        SERVICE + "<class 'int'>",
        id="service-int-with-cluster",
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", "x", service="s"), SERVICE, id="service-checked-first"
    ),
    pytest.param("[]", "TF_CONFIG must be a JSON object. Given []", id="json-list"),
    pytest.param('"worker"', "TF_CONFIG must be a JSON object. Given 'worker'", id="json-string"),
    pytest.param("1", "TF_CONFIG must be a JSON object. Given 1", id="json-number"),
    pytest.param("null", "TF_CONFIG must be a JSON object. Given None", id="json-null"),
    pytest.param('{"task": "worker"}', '"task" in TF_CONFIG must be a dict.', id="task-str"),
    pytest.param(
        '{"cluster": ["c:1"]}',
        '"cluster" in TF_CONFIG must be a dict of job lists.',
        id="cluster-list",
    ),
    pytest.param(
        '{"cluster": {"chief": "c:1"}}',
        "job 'chief' in TF_CONFIG \"cluster\" must be a list",
        id="job-str",
    ),
    pytest.param(
        '{"cluster": {"chief": [1]}}',
        "job 'chief' in TF_CONFIG \"cluster\" must be a list",
        id="address-int",
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", True),
        "task index must be an integer. Given True",
        id="index-bool",
    ),
    pytest.param(
        tf_config(CLUSTER, "worker", [0]),
        "task index must be an integer. Given [0]",
        id="index-list",
    ),
]


@pytest.mark.parametrize(("text", "message"), WRONG_TYPES)
def test_wrong_types_are_type_and_value_errors(text: str, message: str) -> None:
    """A field of the wrong type (the estimator's `TypeError`) is also a `TFConfigError`."""
    with pytest.raises(TFConfigTypeError, match=starts_with(message)) as caught:
        parse_tf_config(text)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TFConfigError)


# --- build_tf_config -----------------------------------------------------------------------------

BUILD = [
    # (cluster, task_type, task_index, expected TF_CONFIG)
    pytest.param(
        {"chief": CHIEF},
        "chief",
        0,
        {
            "cluster": {"chief": CHIEF},
            "task": {"type": "chief", "index": 0},
            "environment": "cloud",
        },
        id="chief-only",
    ),
    pytest.param(
        {"chief": ("c:1",), "worker": ("w0:1", "w1:1")},
        "worker",
        1,
        {
            "cluster": {"chief": ["c:1"], "worker": ["w0:1", "w1:1"]},
            "task": {"type": "worker", "index": 1},
            "environment": "cloud",
        },
        id="tuples-become-lists",
    ),
    pytest.param(
        {"chief": CHIEF, "worker": [], "ps": ()},
        "chief",
        0,
        {
            "cluster": {"chief": CHIEF},
            "task": {"type": "chief", "index": 0},
            "environment": "cloud",
        },
        id="empty-jobs-dropped",
    ),
    pytest.param(
        CLUSTER,
        "evaluator",
        0,
        {"cluster": CLUSTER, "task": {"type": "evaluator", "index": 0}, "environment": "cloud"},
        id="evaluator-carries-training-cluster",
    ),
    pytest.param(
        CLUSTER,
        "ps",
        0,
        {"cluster": CLUSTER, "task": {"type": "ps", "index": 0}, "environment": "cloud"},
        id="ps",
    ),
]


@pytest.mark.parametrize(("cluster", "task_type", "task_index", "expected"), BUILD)
def test_build_tf_config(
    cluster: dict[str, Any], task_type: str, task_index: int, expected: dict[str, Any]
) -> None:
    built = build_tf_config(cluster, task_type, task_index)
    assert built == expected
    assert all(type(addresses) is list for addresses in built["cluster"].values())


def test_build_tf_config_copies_the_cluster() -> None:
    cluster = {"chief": ["c:1"], "worker": ["w:1"]}
    built = build_tf_config(cluster, "worker", 0)
    built["cluster"]["worker"].append("x:1")
    assert cluster == {"chief": ["c:1"], "worker": ["w:1"]}


@pytest.mark.parametrize(
    "cluster",
    [
        pytest.param({**CLUSTER, "evaluator": ["e:1"]}, id="evaluator-job"),
        pytest.param({"chief": CHIEF, "evaluator": []}, id="empty-evaluator-job"),
    ],
)
def test_build_tf_config_rejects_evaluator_in_cluster(cluster: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match=r"^the evaluator is not part of the training cluster; le"):
        build_tf_config(cluster, "evaluator", 0)


ROUND_TRIP_CLUSTER: dict[str, list[str]] = {
    "chief": ["c:1"],
    "worker": ["w0:1", "w1:1", "w2:1"],
    "ps": ["p0:1", "p1:1"],
}
ROUND_TRIP_ROLES = [("chief", 0), ("worker", 0), ("worker", 1), ("worker", 2), ("ps", 0), ("ps", 1)]


@pytest.mark.parametrize(
    ("task_type", "task_index"),
    [pytest.param(t, i, id=f"{t}-{i}") for t, i in [*ROUND_TRIP_ROLES, ("evaluator", 0)]],
)
def test_build_round_trips_through_parse(task_type: str, task_index: int) -> None:
    """What tfdist builds for any role is a `TF_CONFIG` the estimator's rules accept."""
    text = json.dumps(build_tf_config(ROUND_TRIP_CLUSTER, task_type, task_index))
    config = parse_tf_config(text)
    expected_cluster = {} if task_type == "evaluator" else ROUND_TRIP_CLUSTER
    assert config == TFConfig(
        task_type=task_type, task_index=task_index, cluster=expected_cluster, mode="distributed"
    )


@pytest.mark.parametrize(
    "cluster",
    [
        pytest.param({"chief": ["c:1"]}, id="chief-only"),
        pytest.param({"chief": ["c:1"], "worker": ["w:1"]}, id="all-reduce"),
        pytest.param(ROUND_TRIP_CLUSTER, id="parameter-server"),
    ],
)
def test_every_built_role_parses(cluster: dict[str, list[str]]) -> None:
    roles = [(job, i) for job, addresses in cluster.items() for i in range(len(addresses))]
    for task_type, task_index in [*roles, ("evaluator", 0)]:
        config = parse_tf_config(json.dumps(build_tf_config(cluster, task_type, task_index)))
        assert (config.task_type, config.task_index) == (task_type, task_index)
        assert config.is_chief is (task_type == "chief")
