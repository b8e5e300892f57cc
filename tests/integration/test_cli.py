"""The `tfdist` command in a subprocess: `tf-config`, `plan`, and what bad input does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EXAMPLE = Path(__file__).parents[2] / "components" / "tfdist" / "examples" / "digits.yaml"
CLUSTER = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}


def tfdist(*args: str, tf_config: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return subprocess.run(
        [sys.executable, "-m", "tfdist.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


# -- tfdist tf-config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        pytest.param(
            {"type": "worker", "index": 1},
            {"task_type": "worker", "task_index": 1, "cluster": CLUSTER, "mode": "distributed"},
            id="worker",
        ),
        pytest.param(
            {"type": "chief", "index": "0"},
            {"task_type": "chief", "task_index": 0, "cluster": CLUSTER, "mode": "distributed"},
            id="index-as-string",
        ),
        pytest.param(
            {"type": "evaluator", "index": 0},
            {"task_type": "evaluator", "task_index": 0, "cluster": {}, "mode": "distributed"},
            id="evaluator-sees-no-cluster",
        ),
    ],
)
def test_tf_config_valid(task: dict[str, Any], expected: dict[str, Any]) -> None:
    result = tfdist("tf-config", tf_config=json.dumps({"cluster": CLUSTER, "task": task}))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


@pytest.mark.parametrize("tf_config", [None, "", '{"task": {"type": "worker", "index": 0}}'])
def test_tf_config_unset_is_local_mode(tf_config: str | None) -> None:
    result = tfdist("tf-config", tf_config=tf_config)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "task_type": "worker",
        "task_index": 0,
        "cluster": {},
        "mode": "local",
    }


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        pytest.param(
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
            'If "cluster" is set in TF_CONFIG, it must have one "chief" node.',
            id="no-chief",
        ),
        pytest.param(
            {"cluster": CLUSTER, "task": {"type": "worker", "index": 2}},
            "2 is not a valid task_id for task_type worker in the cluster_spec:",
            id="index-out-of-range",
        ),
        pytest.param(
            {"cluster": CLUSTER, "task": {"type": "ps", "index": 0}},
            "ps is not a valid task_type in the cluster_spec:",
            id="unknown-task-type",
        ),
        pytest.param(
            {"cluster": CLUSTER, "task": {"type": "evaluator", "index": 1}},
            "there can only be one `evaluator` task (with task id 0).  Given task id 1",
            id="second-evaluator",
        ),
        pytest.param(
            {"task": {"type": "chief", "index": 0}},
            'If "cluster" is not set in TF_CONFIG, task type must be WORKER.',
            id="chief-without-cluster",
        ),
    ],
)
def test_tf_config_invalid(tf_config: dict[str, Any], message: str) -> None:
    result = tfdist("tf-config", tf_config=json.dumps(tf_config))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("invalid TF_CONFIG: ")
    assert message in result.stderr


def test_tf_config_not_json() -> None:
    result = tfdist("tf-config", tf_config="{cluster:")

    assert result.returncode == 2
    assert "TF_CONFIG is not valid JSON" in result.stderr


# -- tfdist plan ----------------------------------------------------------------------------


def test_plan_prints_every_role_and_launches_nothing(tmp_path: Path) -> None:
    run_root = tmp_path / "runs"

    result = tfdist("plan", str(EXAMPLE), "--run-root", str(run_root))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fields = [line.split("\t") for line in lines]
    assert all(len(parts) == 2 for parts in fields), lines
    configs = {name: json.loads(config) for name, config in fields}
    assert list(configs) == ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]
    cluster = configs["chief-0"]["cluster"]
    assert sorted(cluster) == ["chief", "ps", "worker"]
    addresses = [address for job in cluster.values() for address in job]
    assert len(set(addresses)) == 4
    assert all(address.startswith("127.0.0.1:") for address in addresses)
    for name, config in configs.items():
        role, index = name.rsplit("-", 1)
        assert config["task"] == {"type": role, "index": int(index)}
        assert config["cluster"] == cluster  # the evaluator is not part of it
        assert config["environment"] == "cloud"
    assert not run_root.exists()


def test_plan_applies_overrides(tmp_path: Path) -> None:
    result = tfdist("plan", str(EXAMPLE), "--set", "cluster.ps=0", "--set", "cluster.evaluator=0")

    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        "chief-0",
        "worker-0",
        "worker-1",
    ]


def write_spec(tmp_path: Path, **changes: Any) -> str:
    spec: dict[str, Any] = {
        "name": "bad",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 1},
        "train_spec": {"max_steps": 10},
        "model_dir": str(tmp_path / "model"),
    }
    spec.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return str(path)


@pytest.mark.parametrize(
    ("changes", "field", "fix"),
    [
        pytest.param({"train_spec": {"max_steps": 0}}, "train_spec.max_steps", "0", id="steps"),
        pytest.param({"train_spec": {}}, "train_spec.max_steps", "max_steps", id="no-stop"),
        pytest.param({"cluster": {"worker": 0, "ps": 1}}, "cluster", "worker", id="ps-alone"),
        pytest.param({"name": "Bad_Name"}, "name", "DNS-1123", id="name"),
        pytest.param(
            {"trainer": {"entrypoint": "m", "command": ["python", "t.py"]}},
            "trainer",
            "entrypoint",
            id="two-trainers",
        ),
        pytest.param({"modle_dir": "/tmp/x"}, "modle_dir", "", id="typo"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "run"])
def test_bad_spec_names_the_field(
    tmp_path: Path, command: str, changes: dict[str, Any], field: str, fix: str
) -> None:
    run_root = tmp_path / "runs"

    result = tfdist(command, write_spec(tmp_path, **changes), "--run-root", str(run_root))

    assert result.returncode == 2
    assert result.stderr.startswith("invalid job spec:")
    assert f"  {field}" in result.stderr and fix in result.stderr
    assert "Traceback" not in result.stderr
    assert not run_root.exists()


def test_bad_override_names_the_field(tmp_path: Path) -> None:
    result = tfdist("plan", write_spec(tmp_path), "--set", "eval_spec.throttle_secs=-1")

    assert result.returncode == 2
    assert "  eval_spec.throttle_secs: " in result.stderr


def test_missing_spec_file(tmp_path: Path) -> None:
    result = tfdist("plan", str(tmp_path / "nowhere.yaml"))

    assert result.returncode == 2
    assert f"cannot read job spec {tmp_path / 'nowhere.yaml'}" in result.stderr
    assert "Traceback" not in result.stderr
