"""Planning: each role's `TF_CONFIG`, environment and command, as golden values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tfdist.plan import RUNTIME_MODULE, plan, role_command
from tfdist.spec import JobSpec, Role, parse_spec
from tfdist.tf_config import parse_tf_config

ALL_REDUCE = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits", "env": {"SEED": "7"}},
        "cluster": {"worker": 1, "evaluator": 1},
        "train_spec": {"max_steps": 200},
        "model_dir": "/models/digits",
        "data_dir": "/data/digits",
    }
)
ALL_REDUCE_ADDRESSES = {"chief": ["host:2000"], "worker": ["host:2001"]}
ALL_REDUCE_CLUSTER = {"chief": ["host:2000"], "worker": ["host:2001"]}

PARAMETER_SERVER = parse_spec(
    {
        "name": "digits-ps",
        "trainer": {
            "command": ["python", "train.py", "--epochs", "3"],
            "env": {"SEED": "7", "LOG_LEVEL": "debug"},
        },
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 1000},
        "model_dir": "gs://bucket/digits-ps",
    }
)
PARAMETER_SERVER_ADDRESSES = {
    "chief": ["chief-0.svc:2222"],
    "worker": ["worker-0.svc:2222", "worker-1.svc:2222"],
    "ps": ["ps-0.svc:2222"],
}
PARAMETER_SERVER_CLUSTER = {
    "chief": ["chief-0.svc:2222"],
    "worker": ["worker-0.svc:2222", "worker-1.svc:2222"],
    "ps": ["ps-0.svc:2222"],
}


def tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> dict[str, Any]:
    """A golden `TF_CONFIG` dict, written out rather than built by the code under test."""
    return {"cluster": cluster, "task": {"type": task_type, "index": index}, "environment": "cloud"}


# (name, role, index, address, TF_CONFIG) for every role of each job
ALL_REDUCE_ROLES = [
    ("chief-0", Role.CHIEF, 0, "host:2000", tf_config(ALL_REDUCE_CLUSTER, "chief", 0)),
    ("worker-0", Role.WORKER, 0, "host:2001", tf_config(ALL_REDUCE_CLUSTER, "worker", 0)),
    ("evaluator-0", Role.EVALUATOR, 0, None, tf_config(ALL_REDUCE_CLUSTER, "evaluator", 0)),
]
PS_CLUSTER = PARAMETER_SERVER_CLUSTER
PARAMETER_SERVER_ROLES = [
    ("chief-0", Role.CHIEF, 0, "chief-0.svc:2222", tf_config(PS_CLUSTER, "chief", 0)),
    ("worker-0", Role.WORKER, 0, "worker-0.svc:2222", tf_config(PS_CLUSTER, "worker", 0)),
    ("worker-1", Role.WORKER, 1, "worker-1.svc:2222", tf_config(PS_CLUSTER, "worker", 1)),
    ("ps-0", Role.PS, 0, "ps-0.svc:2222", tf_config(PS_CLUSTER, "ps", 0)),
    ("evaluator-0", Role.EVALUATOR, 0, None, tf_config(PS_CLUSTER, "evaluator", 0)),
]

JOBS = [
    # (spec, addresses, expected cluster, expected roles, expected command, expected env)
    pytest.param(
        ALL_REDUCE,
        ALL_REDUCE_ADDRESSES,
        ALL_REDUCE_CLUSTER,
        ALL_REDUCE_ROLES,
        ("python", "-m", "tfdist.runtime"),
        {"SEED": "7", "MODEL_DIR": "/models/digits", "TFDIST_DATA_DIR": "/data/digits"},
        id="chief-worker-evaluator",
    ),
    pytest.param(
        PARAMETER_SERVER,
        PARAMETER_SERVER_ADDRESSES,
        PARAMETER_SERVER_CLUSTER,
        PARAMETER_SERVER_ROLES,
        ("python", "train.py", "--epochs", "3"),
        {"SEED": "7", "LOG_LEVEL": "debug", "MODEL_DIR": "gs://bucket/digits-ps"},
        id="chief-2workers-ps-evaluator",
    ),
]


@pytest.mark.parametrize(("spec", "addresses", "cluster", "roles", "command", "env"), JOBS)
def test_plan_golden(
    spec: JobSpec,
    addresses: dict[str, list[str]],
    cluster: dict[str, list[str]],
    roles: list[tuple[str, Role, int, str | None, dict[str, Any]]],
    command: tuple[str, ...],
    env: dict[str, str],
) -> None:
    """Every role: name, address, command, `TF_CONFIG` and the rest of its environment."""
    job = plan(spec, addresses)
    assert job.spec == spec
    assert job.cluster == cluster
    assert job.role_names == [name for name, *_ in roles]
    for (name, role, index, address, tf_config_dict), planned in zip(roles, job.roles, strict=True):
        assert (planned.name, planned.role, planned.index) == (name, role, index)
        assert planned.address == address
        assert planned.command == command
        assert planned.env["TF_CONFIG"] == json.dumps(tf_config_dict, sort_keys=True)
        assert planned.tf_config == tf_config_dict
        assert JobSpec.model_validate_json(planned.env["TFDIST_JOB"]) == spec
        others = {k: v for k, v in planned.env.items() if k not in ("TF_CONFIG", "TFDIST_JOB")}
        assert others == env


@pytest.mark.parametrize(
    ("spec", "addresses"),
    [
        pytest.param(ALL_REDUCE, ALL_REDUCE_ADDRESSES, id="all-reduce"),
        pytest.param(PARAMETER_SERVER, PARAMETER_SERVER_ADDRESSES, id="parameter-server"),
    ],
)
def test_every_role_tf_config_is_valid(spec: JobSpec, addresses: dict[str, list[str]]) -> None:
    """Each role's `TF_CONFIG` passes the estimator's rules as that role."""
    for planned in plan(spec, addresses).roles:
        config = parse_tf_config(planned.env["TF_CONFIG"])
        assert (config.task_type, config.task_index) == (planned.role.value, planned.index)
        assert config.mode == "distributed"
        assert config.is_chief is (planned.role is Role.CHIEF)


def test_evaluator_is_outside_the_training_cluster() -> None:
    job = plan(PARAMETER_SERVER, PARAMETER_SERVER_ADDRESSES)
    assert "evaluator" not in job.cluster
    evaluator = job.role("evaluator-0")
    assert evaluator.address is None
    assert evaluator.tf_config["cluster"] == PARAMETER_SERVER_CLUSTER
    assert evaluator.tf_config["task"] == {"type": "evaluator", "index": 0}


def test_role_lookup() -> None:
    job = plan(PARAMETER_SERVER, PARAMETER_SERVER_ADDRESSES)
    assert job.role("worker-1").address == "worker-1.svc:2222"
    assert job.role("ps-0").role is Role.PS
    with pytest.raises(KeyError, match="no role 'worker-2' in job 'digits-ps'"):
        job.role("worker-2")


def test_chief_only_job() -> None:
    spec = ALL_REDUCE.with_overrides({"cluster": {}})
    job = plan(spec, {"chief": ["localhost:1"]})
    assert job.role_names == ["chief-0"]
    assert job.cluster == {"chief": ["localhost:1"]}
    assert job.roles[0].tf_config == tf_config({"chief": ["localhost:1"]}, "chief", 0)


def test_addresses_may_be_tuples_and_extra_jobs_are_ignored() -> None:
    addresses = {"chief": ("host:2000",), "worker": ("host:2001",), "evaluator": ("e:1",)}
    job = plan(ALL_REDUCE, addresses)
    assert job.cluster == ALL_REDUCE_CLUSTER
    assert job.role("evaluator-0").address is None


WRONG_ADDRESSES = [
    # (spec, addresses, message)
    pytest.param(
        PARAMETER_SERVER,
        {**PARAMETER_SERVER_ADDRESSES, "worker": ["w:1"]},
        "worker: 2 replicas but 1 addresses",
        id="too-few-workers",
    ),
    pytest.param(
        PARAMETER_SERVER,
        {**PARAMETER_SERVER_ADDRESSES, "ps": []},
        "ps: 1 replicas but 0 addresses",
        id="no-ps-addresses",
    ),
    pytest.param(
        PARAMETER_SERVER,
        {k: v for k, v in PARAMETER_SERVER_ADDRESSES.items() if k != "ps"},
        "ps: 1 replicas but 0 addresses",
        id="ps-missing",
    ),
    pytest.param(
        PARAMETER_SERVER,
        {**PARAMETER_SERVER_ADDRESSES, "chief": []},
        "chief: 1 replicas but 0 addresses",
        id="no-chief-address",
    ),
    pytest.param(
        ALL_REDUCE,
        {**ALL_REDUCE_ADDRESSES, "chief": ["a:1", "b:1"]},
        "chief: 1 replicas but 2 addresses",
        id="two-chief-addresses",
    ),
    pytest.param(
        ALL_REDUCE,
        {**ALL_REDUCE_ADDRESSES, "ps": ["p:1"]},
        "ps: 0 replicas but 1 addresses",
        id="unexpected-ps",
    ),
    pytest.param(ALL_REDUCE, {}, "chief: 1 replicas but 0 addresses", id="none"),
]


@pytest.mark.parametrize(("spec", "addresses", "message"), WRONG_ADDRESSES)
def test_wrong_number_of_addresses(
    spec: JobSpec, addresses: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        plan(spec, addresses)


@pytest.mark.parametrize(
    ("spec", "python", "command"),
    [
        pytest.param(ALL_REDUCE, "python", ("python", "-m", RUNTIME_MODULE), id="entrypoint"),
        pytest.param(
            ALL_REDUCE, "/venv/bin/python", ("/venv/bin/python", "-m", "tfdist.runtime"), id="venv"
        ),
        pytest.param(
            PARAMETER_SERVER, "/venv/bin/python", ("python", "train.py", "--epochs", "3"), id="cmd"
        ),
    ],
)
def test_role_command(spec: JobSpec, python: str, command: tuple[str, ...]) -> None:
    """An entrypoint runs tfdist's runtime with the given interpreter; a command runs as given."""
    assert role_command(spec, python) == command
    addresses = ALL_REDUCE_ADDRESSES if spec is ALL_REDUCE else PARAMETER_SERVER_ADDRESSES
    assert {role.command for role in plan(spec, addresses, python=python).roles} == {command}


def test_plan_does_not_share_address_lists() -> None:
    addresses = {"chief": ["host:2000"], "worker": ["host:2001"]}
    job = plan(ALL_REDUCE, addresses)
    addresses["worker"].append("host:2002")
    assert job.cluster == ALL_REDUCE_CLUSTER
    assert job.role("chief-0").tf_config["cluster"] == ALL_REDUCE_CLUSTER
