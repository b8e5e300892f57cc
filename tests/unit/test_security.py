"""No credential in TF_CONFIG, XCom or the blessing; no shell strings; no path out of the model
or serving directory."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from task_context import context, launched

from tfdist.deploy import DeployError, model_root
from tfdist.plan import plan
from tfdist.records import EvalRecord, eval_record_name
from tfdist.spec import JobSpec, SpecError, parse_spec
from tfdist.testing import FakeBackend
from tfdist_airflow import gate_export_deploy, train_and_evaluate
from tfdist_airflow.roles import REDACTED, LaunchRolesOperator, redacted
from tfdist_airflow.runs import run_model_dir, run_name

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-token-5b1e"
SOURCES = ("components", "operators", "dags", "bench")
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
PROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def job(model_dir: str = "/models/m", **env: str) -> JobSpec:
    return parse_spec(
        {
            "name": "secure",
            "trainer": {"entrypoint": "tfdist.examples.digits", "env": env},
            "cluster": {"worker": 1, "ps": 1, "evaluator": 1},
            "train_spec": {"max_steps": 40},
            "model_dir": model_dir,
        }
    )


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def shell_uses(path: Path, root: Path = REPO) -> list[str]:
    """Calls that hand a string to a shell: `shell=True`, `os.system`, a command as one string."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        shell = any(
            k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
            for k in node.keywords
        )
        one_string = (
            name.rsplit(".", 1)[-1] in PROCESS_CALLS
            and name.startswith(("subprocess.", "psutil."))
            and bool(node.args)
            and isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp)
        )
        if shell or name in SHELL_CALLS or one_string:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_command_is_a_shell_string() -> None:
    files = [p for root in SOURCES for p in (REPO / root).rglob("*.py")]
    assert len(files) > 40
    assert [use for path in files for use in shell_uses(path)] == []


def test_the_shell_check_finds_a_shell_string(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os, subprocess\nsubprocess.run(f'train {x}', shell=True)\nos.system('ls')\n"
        "subprocess.Popen('ls ' + name)\nsubprocess.run(['ls'], shell=False)\n"
    )
    assert len(shell_uses(bad, tmp_path)) == 3


def test_tf_config_holds_addresses_only() -> None:
    spec = job(API_TOKEN=SECRET)
    addresses = {"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3"]}
    for role in plan(spec, addresses).roles:
        assert SECRET not in role.env["TF_CONFIG"]
        assert role.env["API_TOKEN"] == SECRET  # the role's own environment: it needs it


def test_xcom_keeps_the_keys_of_trainer_env_only(tmp_path: Path) -> None:
    """What the launch task pushes, while every role is launched with the real value."""
    launch = LaunchRolesOperator(
        task_id="launch",
        job=job(str(tmp_path), API_TOKEN=SECRET, REGION="eu").model_dump(mode="json"),
        backend={"kind": "fake", "name": str(tmp_path)},
        group_id="train",
        model_dir_base=str(tmp_path / "models"),
    )

    ctx = context(dag_id="d", run_id="r")
    launch.execute(ctx)
    pushed = launched(ctx)

    assert pushed["spec"]["trainer"]["env"] == {"API_TOKEN": REDACTED, "REGION": REDACTED}
    assert SECRET not in json.dumps(pushed)
    assert JobSpec.model_validate(pushed["spec"]).model_dir == f"{tmp_path}/models/d/r"
    [launch_] = FakeBackend.named(str(tmp_path)).launches.values()
    assert {role.env["API_TOKEN"] for role in launch_.job.roles} == {SECRET}


def test_the_export_task_renders_the_real_trainer_env_itself(tmp_path: Path) -> None:
    """What the export task runs the trainer with: the job's `trainer.env` and the launch's
    trainer overrides, declared on the export task when the DAG is built, rendered there."""
    spec = job(str(tmp_path), REGION="eu")
    with DAG("secure", schedule=None, params={"token": SECRET}) as dag:
        training = train_and_evaluate(
            spec,
            model_dir_base=str(tmp_path),
            overrides={
                "trainer.env.API_TOKEN": "{{ params.token }}",
                "train_spec.max_steps": "{{ params.token }}",  # not the export's
            },
        )
        _, export, _ = gate_export_deploy(
            training, thresholds={}, serving_base=str(tmp_path / "serving"), model_name="m"
        )
    context: Any = {"dag": dag, "run_id": "manual__1", "params": {"token": SECRET}}

    export.render_template_fields(context)

    assert export.trainer_overrides == {"trainer.env.API_TOKEN": SECRET}
    assert export.trainer_env() == {"REGION": "eu", "API_TOKEN": SECRET}


def test_the_blessing_holds_no_trainer_env(tmp_path: Path) -> None:

    from tfdist_airflow.gate import BlessingGateOperator

    spec = job(str(tmp_path / "model"), API_TOKEN=SECRET)
    record = EvalRecord(
        global_step=40,
        metrics={"accuracy": 0.95, "loss": 0.1},
        checkpoint_path=str(tmp_path / "model" / "ckpt-40"),
        timestamp=0.0,
        eval_steps=2,
    )
    path = Path(eval_record_name(str(tmp_path / "model" / "eval"), 40))
    path.parent.mkdir(parents=True)
    path.write_text(record.model_dump_json())
    handle = {"backend": "local", "job_id": "-", "launch_id": "-", "roles": []}
    gate = BlessingGateOperator(
        task_id="gate",
        launch_task_id="launch",
        thresholds={"accuracy": {"min": 0.9}},
        serving_base=str(tmp_path),
        model_name="m",
    )

    gated = gate.execute(context({"spec": redacted(spec), "handle": handle}))
    blessed = gated["blessing"]["blessed"]

    assert blessed
    text = (tmp_path / "model" / "blessing" / "blessing.json").read_text()
    assert SECRET not in text and "API_TOKEN" not in text
    assert SECRET not in json.dumps(gated)


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/abs", ".hidden", ""])
def test_a_model_name_cannot_leave_the_serving_dir(name: str) -> None:
    with pytest.raises(DeployError, match="it names the serving directory"):
        model_root("/serving", name)


@pytest.mark.parametrize("run_id", ["../../x", "a/../../b", "..%2F..", "x/..", "./."])
def test_a_run_id_cannot_leave_the_model_dir_base(run_id: str) -> None:
    try:
        model_dir = run_model_dir("/models", "dag", run_id)
    except ValueError:
        return  # nothing usable in it: refused
    parts = model_dir.split("/")
    assert parts[:3] == ["", "models", "dag"] and len(parts) == 4
    assert parts[3] not in ("", ".", "..") and run_name(run_id) == parts[3]


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "../x"), ("eval_spec", {"name": "../x"}), ("eval_spec", {"name": "a/b"})],
)
def test_spec_names_that_become_paths_are_refused(field: str, value: object) -> None:
    data = job().model_dump(mode="json")
    data[field] = value
    with pytest.raises(SpecError):
        parse_spec(data)
