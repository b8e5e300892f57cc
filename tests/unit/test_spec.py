"""The job spec: loading, validation messages that name the field and the fix, overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tfdist.spec import (
    ClusterSpec,
    EvalSpec,
    JobSpec,
    Role,
    SpecError,
    TrainerSpec,
    TrainSpec,
    load_spec,
    parse_spec,
)

MINIMAL_YAML = """\
name: digits
trainer:
  entrypoint: tfdist.examples.digits
train_spec:
  max_steps: 200
model_dir: /models/digits
"""

DELETE = object()  # a change that removes the field


def minimal() -> dict[str, Any]:
    """The smallest valid spec, as a fresh dict."""
    return {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "train_spec": {"max_steps": 200},
        "model_dir": "/models/digits",
    }


def changed(changes: dict[str, Any]) -> dict[str, Any]:
    """`minimal()` with dotted paths set (or removed with `DELETE`)."""
    data = copy.deepcopy(minimal())
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return data


def error_lines(data: Any) -> list[str]:
    """The per-field lines of the `SpecError` that `data` raises."""
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    head, *lines = str(caught.value).splitlines()
    assert head == "invalid job spec:"
    return [line.strip() for line in lines]


# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["yaml", "yml"])
def test_load_minimal_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"job.{suffix}"
    path.write_text(MINIMAL_YAML)
    spec = load_spec(path)
    assert spec.name == "digits"
    assert spec.trainer == TrainerSpec(entrypoint="tfdist.examples.digits")
    assert spec.trainer.command is None
    assert spec.trainer.env == {}
    assert spec.train_spec.max_steps == 200
    assert spec.train_spec.train_forever is False
    assert spec.model_dir == "/models/digits"
    assert spec.data_dir is None
    assert spec.cluster == ClusterSpec(chief=1, worker=0, ps=0, evaluator=0)
    assert spec == parse_spec(minimal())


def test_load_json(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(changed({"cluster": {"worker": 2, "evaluator": 1}})))
    spec = load_spec(str(path))
    assert spec.cluster == ClusterSpec(chief=1, worker=2, ps=0, evaluator=1)
    assert spec.name == "digits"


def test_load_full_yaml(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        """\
name: nightly-digits
trainer:
  command: [python, train.py, --epochs, "3"]
  env: {SEED: "7"}
cluster: {chief: 1, worker: 2, ps: 1, evaluator: 1}
train_spec: {max_steps: 1000, save_checkpoints_steps: 50}
eval_spec: {steps: 10, name: holdout, start_delay_secs: 0, throttle_secs: 5}
model_dir: gs://bucket/models/digits/
data_dir: /data
"""
    )
    spec = load_spec(path)
    assert spec.trainer.command == ("python", "train.py", "--epochs", "3")
    assert spec.trainer.entrypoint is None
    assert spec.trainer.env == {"SEED": "7"}
    assert spec.cluster.uses_parameter_servers
    assert spec.train_spec.save_checkpoints_steps == 50
    assert spec.eval_spec == EvalSpec(steps=10, name="holdout", start_delay_secs=0, throttle_secs=5)
    assert spec.eval_spec.dir_name == "eval_holdout"
    assert spec.model_dir == "gs://bucket/models/digits"
    assert spec.data_dir == "/data"


@pytest.mark.parametrize(
    ("filename", "text", "message"),
    [
        pytest.param("job.yaml", "- name\n- digits\n", "expected a mapping", id="yaml-list"),
        pytest.param("job.yaml", "digits\n", "expected a mapping", id="yaml-scalar"),
        pytest.param("job.yaml", "", "expected a mapping", id="yaml-empty"),
        pytest.param("job.json", "[1, 2]", "expected a mapping", id="json-list"),
        pytest.param("job.yaml", "name: [digits\n", "not valid YAML/JSON", id="invalid-yaml"),
        pytest.param("job.yaml", "name: a\n\tmodel_dir: b\n", "not valid YAML/JSON", id="yaml-tab"),
        pytest.param("job.json", '{"name": ', "not valid YAML/JSON", id="invalid-json"),
    ],
)
def test_load_rejects_unusable_documents(
    tmp_path: Path, filename: str, text: str, message: str
) -> None:
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as caught:
        load_spec(path)
    if "YAML" in message:
        assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize("data", [None, [], "digits", 3], ids=["none", "list", "str", "int"])
def test_parse_rejects_non_mapping(data: Any) -> None:
    with pytest.raises(SpecError, match=r"^invalid job spec: expected a mapping with `name`, "):
        parse_spec(data)


# --- validation errors: field path and fix -------------------------------------------------------

ERRORS = [
    # (changes to the minimal spec, the error line: field path, then the message with its fix)
    pytest.param(
        {"train_spec.max_steps": 0},
        "train_spec.max_steps: Input should be greater than 0",
        id="max-steps-zero",
    ),
    pytest.param(
        {"train_spec.max_steps": -5},
        "train_spec.max_steps: Input should be greater than 0",
        id="max-steps-negative",
    ),
    pytest.param(
        {"train_spec.max_steps": DELETE},
        "train_spec.max_steps: required; set `max_steps` to a positive number, or set "
        "`train_forever: true` to train until the job is stopped",
        id="max-steps-missing",
    ),
    pytest.param(
        {"train_spec.max_steps": None},
        "train_spec.max_steps: required; set `max_steps` to a positive number",
        id="max-steps-null",
    ),
    pytest.param(
        {"train_spec.train_forever": True},
        "train_spec.max_steps: set either `max_steps` or `train_forever: true`, not both",
        id="max-steps-and-train-forever",
    ),
    pytest.param(
        {"train_spec.save_checkpoints_steps": 0},
        "train_spec.save_checkpoints_steps: Input should be greater than 0",
        id="save-checkpoints-steps-zero",
    ),
    pytest.param(
        {"train_spec.keep_checkpoint_max": 0},
        "train_spec.keep_checkpoint_max: Input should be greater than 0",
        id="keep-checkpoint-max-zero",
    ),
    pytest.param(
        {"train_spec.log_step_count_steps": 0},
        "train_spec.log_step_count_steps: Input should be greater than 0",
        id="log-step-count-steps-zero",
    ),
    pytest.param(
        {"cluster.chief": 0},
        "cluster.chief: a cluster has exactly one chief, got 0; set `chief: 1`",
        id="chief-zero",
    ),
    pytest.param(
        {"cluster.chief": 2},
        "cluster.chief: a cluster has exactly one chief, got 2; set `chief: 1`",
        id="chief-two",
    ),
    pytest.param(
        {"cluster.evaluator": 2},
        "cluster.evaluator: there can only be one evaluator, got 2; set `evaluator: 0` or `1`",
        id="evaluator-two",
    ),
    pytest.param(
        {"cluster.evaluator": -1},
        "cluster.evaluator: Input should be greater than or equal to 0",
        id="evaluator-negative",
    ),
    pytest.param(
        {"cluster.worker": -1},
        "cluster.worker: Input should be greater than or equal to 0",
        id="worker-negative",
    ),
    pytest.param(
        {"cluster.worker": 1, "cluster.ps": -1},
        "cluster.ps: Input should be greater than or equal to 0",
        id="ps-negative",
    ),
    pytest.param(
        {"cluster.ps": 1},
        "cluster.ps: parameter-server training needs at least one worker; set `worker: 1` or "
        "more, or `ps: 0` for all-reduce training",
        id="ps-without-worker",
    ),
    pytest.param(
        {"cluster.ps": 2, "cluster.worker": 0},
        "cluster.ps: parameter-server training needs at least one worker",
        id="ps-with-zero-workers",
    ),
    pytest.param(
        {"cluster.worker": "two"},
        "cluster.worker: Input should be a valid integer",
        id="worker-not-a-number",
    ),
    pytest.param(
        {"eval_spec.steps": 0},
        "eval_spec.steps: Input should be greater than 0",
        id="eval-steps-zero",
    ),
    pytest.param(
        {"eval_spec.steps": -1},
        "eval_spec.steps: Input should be greater than 0",
        id="eval-steps-negative",
    ),
    pytest.param(
        {"eval_spec.start_delay_secs": -1},
        "eval_spec.start_delay_secs: Input should be greater than or equal to 0",
        id="start-delay-negative",
    ),
    pytest.param(
        {"eval_spec.throttle_secs": -0.5},
        "eval_spec.throttle_secs: Input should be greater than or equal to 0",
        id="throttle-negative",
    ),
    pytest.param(
        {"eval_spec.name": "hold/out"},
        "eval_spec.name: use letters, digits, `_`, `-` or `.` only; it names a directory",
        id="eval-name-slash",
    ),
    pytest.param(
        {"name": "Digits"},
        "name: 'Digits' must be a DNS-1123 label of at most 40 characters (lowercase letters, "
        "digits and `-`, starting and ending with a letter or digit); it names processes and pods",
        id="name-uppercase",
    ),
    pytest.param(
        {"name": "a" * 41},
        f"name: '{'a' * 41}' must be a DNS-1123 label of at most 40 characters",
        id="name-too-long",
    ),
    pytest.param(
        {"name": "my_job"},
        "name: 'my_job' must be a DNS-1123 label",
        id="name-underscore",
    ),
    pytest.param({"name": "-job"}, "name: '-job' must be a DNS-1123 label", id="name-leading-dash"),
    pytest.param(
        {"name": "job-"}, "name: 'job-' must be a DNS-1123 label", id="name-trailing-dash"
    ),
    pytest.param({"name": ""}, "name: '' must be a DNS-1123 label", id="name-empty"),
    pytest.param(
        {"name": "job\n"}, "name: 'job\\n' must be a DNS-1123 label", id="name-trailing-newline"
    ),
    pytest.param({"name": DELETE}, "name: required; add it", id="name-missing"),
    pytest.param(
        {"trainer": {"entrypoint": "tfdist.examples.digits", "command": ["python", "t.py"]}},
        "trainer: set exactly one of `entrypoint` (a Python module using the tfdist trainer "
        "contract) or `command` (a program that reads TF_CONFIG)",
        id="entrypoint-and-command",
    ),
    pytest.param(
        {"trainer": {}},
        "trainer: set exactly one of `entrypoint`",
        id="neither-entrypoint-nor-command",
    ),
    pytest.param(
        {"trainer": {"env": {"SEED": "1"}}},
        "trainer: set exactly one of `entrypoint`",
        id="only-env",
    ),
    pytest.param({"trainer": DELETE}, "trainer: required; add it", id="trainer-missing"),
    pytest.param(
        {"trainer": {"command": []}},
        "trainer.command: must name a program, for example [python, train.py]",
        id="command-empty",
    ),
    pytest.param(
        {"trainer": {"command": ["", "train.py"]}},
        "trainer.command: must name a program, for example [python, train.py]",
        id="command-empty-program",
    ),
    pytest.param(
        {"trainer": {"command": "python train.py"}},
        "trainer.command: Input should be a valid tuple",
        id="command-string",
    ),
    pytest.param(
        {"trainer.entrypoint": "tfdist/examples/digits.py"},
        "trainer.entrypoint: 'tfdist/examples/digits.py' is not a Python module path; "
        "write it like `package.module`",
        id="entrypoint-file-path",
    ),
    pytest.param(
        {"trainer.entrypoint": "tfdist..digits"},
        "trainer.entrypoint: 'tfdist..digits' is not a Python module path",
        id="entrypoint-empty-part",
    ),
    pytest.param(
        {"trainer.entrypoint": "1tfdist.digits"},
        "trainer.entrypoint: '1tfdist.digits' is not a Python module path",
        id="entrypoint-leading-digit",
    ),
    pytest.param(
        {"trainer.entrypoint": "tfdist.digits\n"},
        "trainer.entrypoint: 'tfdist.digits\\n' is not a Python module path",
        id="entrypoint-trailing-newline",
    ),
    pytest.param(
        {"trainer.env": {"TF_CONFIG": "{}"}},
        "trainer.env: TF_CONFIG is set by tfdist for each role; remove it",
        id="env-tf-config",
    ),
    pytest.param(
        {"trainer.env": {"TFDIST_JOB": "x", "MODEL_DIR": "/m", "SEED": "1"}},
        "trainer.env: MODEL_DIR, TFDIST_JOB are set by tfdist for each role; remove them",
        id="env-model-dir-and-job",
    ),
    pytest.param(
        {"trainer.env": {"TFDIST_DATA_DIR": "/d"}},
        "trainer.env: TFDIST_DATA_DIR is set by tfdist for each role; remove it",
        id="env-data-dir",
    ),
    pytest.param({"model_dir": DELETE}, "model_dir: required; add it", id="model-dir-missing"),
    pytest.param(
        {"model_dir": " "},
        "model_dir: is empty; use a local path such as /data/models, or gs://BUCKET/PREFIX",
        id="model-dir-blank",
    ),
    pytest.param(
        {"restart_policy.grace_period_secs": 0},
        "restart_policy.grace_period_secs: Input should be greater than or equal to 1",
        id="no-grace-period",
    ),
    pytest.param(
        {"epochs": 3},
        "epochs: unknown field; remove it or correct its spelling",
        id="unknown-top-level-field",
    ),
    pytest.param(
        {"train_spec.max_step": 3},
        "train_spec.max_step: unknown field; remove it or correct its spelling",
        id="unknown-nested-field",
    ),
    pytest.param(
        {"cluster.workers": 2},
        "cluster.workers: unknown field; remove it or correct its spelling",
        id="unknown-cluster-field",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), ERRORS)
def test_validation_error_names_field_and_fix(changes: dict[str, Any], expected: str) -> None:
    """Each bad spec fails with one line: the field's dotted path, then what to change."""
    lines = error_lines(changed(changes))
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]


def test_every_error_is_listed() -> None:
    data = changed({"name": "Bad", "train_spec.max_steps": 0, "cluster.chief": 2, "extra": 1})
    fields = [line.split(":", 1)[0] for line in error_lines(data)]
    assert sorted(fields) == ["cluster.chief", "extra", "name", "train_spec.max_steps"]


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


VALID_EDGES = [
    # (changes to the minimal spec, a path into the spec, the value it must have)
    pytest.param({"name": "a" * 40}, "name", "a" * 40, id="name-40-chars"),
    pytest.param({"name": "a"}, "name", "a", id="name-1-char"),
    pytest.param({"name": "0-job-1"}, "name", "0-job-1", id="name-digits-and-dashes"),
    pytest.param(
        {"train_spec.max_steps": DELETE, "train_spec.train_forever": True},
        "train_spec.max_steps",
        None,
        id="train-forever",
    ),
    pytest.param({"train_spec.max_steps": 1}, "train_spec.max_steps", 1, id="max-steps-one"),
    pytest.param({"eval_spec.steps": None}, "eval_spec.steps", None, id="eval-whole-input"),
    pytest.param(
        {"eval_spec.start_delay_secs": 0}, "eval_spec.start_delay_secs", 0, id="start-delay-zero"
    ),
    pytest.param({"eval_spec.throttle_secs": 0}, "eval_spec.throttle_secs", 0, id="throttle-zero"),
    pytest.param({"cluster.worker": 3, "cluster.ps": 2}, "cluster.ps", 2, id="ps-with-workers"),
    pytest.param({"cluster.evaluator": 1}, "cluster.evaluator", 1, id="one-evaluator"),
    pytest.param(
        {"trainer": {"command": ["./train"]}}, "trainer.command", ("./train",), id="command"
    ),
    pytest.param(
        {"trainer.entrypoint": "_pkg.mod_2"}, "trainer.entrypoint", "_pkg.mod_2", id="entrypoint"
    ),
    pytest.param({"trainer.env": {"SEED": "1"}}, "trainer.env", {"SEED": "1"}, id="env"),
    pytest.param({"model_dir": "/m/"}, "model_dir", "/m", id="model-dir-trailing-slash"),
    pytest.param({"model_dir": "gs://bkt/m//"}, "model_dir", "gs://bkt/m", id="model-dir-gcs"),
    pytest.param({"model_dir": "/"}, "model_dir", "/", id="model-dir-root"),
    pytest.param({"model_dir": "///"}, "model_dir", "/", id="model-dir-slashes"),
]


@pytest.mark.parametrize(("changes", "path", "value"), VALID_EDGES)
def test_valid_edge_cases(changes: dict[str, Any], path: str, value: Any) -> None:
    spec: Any = parse_spec(changed(changes))
    for part in path.split("."):
        spec = getattr(spec, part)
    assert spec == value


# --- defaults, immutability, roles ---------------------------------------------------------------


def test_eval_spec_defaults_mirror_the_estimator() -> None:
    """`tf.estimator.EvalSpec`: steps=100, start_delay_secs=120, throttle_secs=600, name=None."""
    eval_spec = parse_spec(minimal()).eval_spec
    assert (eval_spec.steps, eval_spec.start_delay_secs, eval_spec.throttle_secs) == (100, 120, 600)
    assert eval_spec.name is None
    assert eval_spec.dir_name == "eval"
    assert EvalSpec() == eval_spec


def test_train_spec_defaults() -> None:
    train_spec = TrainSpec(max_steps=5)
    assert train_spec.train_forever is False
    assert train_spec.save_checkpoints_steps == 100
    assert train_spec.keep_checkpoint_max == 5
    assert train_spec.log_step_count_steps == 50


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("name", "other", id="name"),
        pytest.param("model_dir", "/x", id="model-dir"),
        pytest.param("train_spec.max_steps", 5, id="train-spec"),
        pytest.param("eval_spec.steps", 5, id="eval-spec"),
        pytest.param("cluster.worker", 5, id="cluster"),
        pytest.param("trainer.entrypoint", "other.module", id="trainer"),
    ],
)
def test_spec_is_frozen(path: str, value: Any) -> None:
    spec = parse_spec(minimal())
    *parents, leaf = path.split(".")
    target: Any = spec
    for parent in parents:
        target = getattr(target, parent)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(target, leaf, value)
    assert spec == parse_spec(minimal())


@pytest.mark.parametrize(
    ("cluster", "roles"),
    [
        pytest.param({}, [(Role.CHIEF, 0)], id="chief-only"),
        pytest.param(
            {"worker": 2, "evaluator": 1},
            [(Role.CHIEF, 0), (Role.WORKER, 0), (Role.WORKER, 1), (Role.EVALUATOR, 0)],
            id="all-reduce",
        ),
        pytest.param(
            {"worker": 2, "ps": 2, "evaluator": 1},
            [
                (Role.CHIEF, 0),
                (Role.WORKER, 0),
                (Role.WORKER, 1),
                (Role.PS, 0),
                (Role.PS, 1),
                (Role.EVALUATOR, 0),
            ],
            id="parameter-server",
        ),
    ],
)
def test_roles_order(cluster: dict[str, int], roles: list[tuple[Role, int]]) -> None:
    """Chief first, then workers, parameter servers, and the evaluator last."""
    spec = parse_spec(changed({"cluster": cluster}))
    assert spec.roles() == roles
    assert [spec.cluster.count(role) for role in Role] == [
        sum(1 for r, _ in roles if r is role) for role in Role
    ]


def test_role_values() -> None:
    assert [role.value for role in Role] == ["chief", "worker", "ps", "evaluator"]


# --- with_overrides ------------------------------------------------------------------------------

OVERRIDES = [
    # (changes, the expected spec as changes to the minimal one)
    pytest.param({}, {}, id="none"),
    pytest.param(
        {"train_spec.max_steps": 10, "model_dir": "/x"},
        {"train_spec.max_steps": 10, "model_dir": "/x"},
        id="nested-and-top-level",
    ),
    pytest.param(
        {"cluster.worker": 2, "cluster.ps": 1, "cluster.evaluator": 1},
        {"cluster": {"worker": 2, "ps": 1, "evaluator": 1}},
        id="checked-after-all-changes",
    ),
    pytest.param({"trainer.env.SEED": "1"}, {"trainer.env": {"SEED": "1"}}, id="env-entry"),
    pytest.param({"eval_spec": {"steps": 5}}, {"eval_spec": {"steps": 5}}, id="whole-section"),
    pytest.param(
        {"train_spec.max_steps": None, "train_spec.train_forever": True},
        {"train_spec": {"train_forever": True}},
        id="train-forever",
    ),
    pytest.param(
        {"trainer": {"command": ["python", "t.py"]}},
        {"trainer": {"command": ["python", "t.py"]}},
        id="replace-trainer",
    ),
    pytest.param({"data_dir": "/data"}, {"data_dir": "/data"}, id="optional-field"),
    pytest.param({"model_dir": "/x/"}, {"model_dir": "/x"}, id="normalized"),
]


@pytest.mark.parametrize(("changes", "expected"), OVERRIDES)
def test_with_overrides(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    original = parse_spec(minimal())
    updated = original.with_overrides(changes)
    assert isinstance(updated, JobSpec)
    assert updated == parse_spec(changed(expected))
    assert original == parse_spec(minimal()), "the original must not change"


def test_with_overrides_keeps_other_fields() -> None:
    spec = parse_spec(
        changed({"cluster.worker": 2, "eval_spec.steps": 7, "trainer.env": {"A": "1"}})
    )
    updated = spec.with_overrides({"train_spec.max_steps": 10, "trainer.env.B": "2"})
    assert updated.cluster == spec.cluster
    assert updated.eval_spec == spec.eval_spec
    assert updated.trainer.env == {"A": "1", "B": "2"}
    assert spec.trainer.env == {"A": "1"}
    assert updated.train_spec.max_steps == 10


BAD_OVERRIDES = [
    # (changes, text the SpecError must contain)
    pytest.param(
        {"train_spec.max_steps": 0},
        "train_spec.max_steps: Input should be greater than 0",
        id="max-steps-zero",
    ),
    pytest.param(
        {"cluster.chief": 2}, "cluster.chief: a cluster has exactly one chief", id="chief-two"
    ),
    pytest.param(
        {"cluster.ps": 1},
        "cluster.ps: parameter-server training needs at least one worker",
        id="ps-without-worker",
    ),
    pytest.param(
        {"train_spec.train_forever": True},
        "train_spec.max_steps: set either",
        id="both-stop-conditions",
    ),
    pytest.param(
        {"trainer.env.TF_CONFIG": "{}"},
        "trainer.env: TF_CONFIG is set by tfdist",
        id="reserved-env",
    ),
    pytest.param(
        {"trainer.command": ["python"]}, "trainer: set exactly one of", id="adds-second-entrypoint"
    ),
    pytest.param({"name": "Bad"}, "name: 'Bad' must be a DNS-1123 label", id="bad-name"),
    pytest.param({"model_dir": ""}, "model_dir: is empty; use a local path", id="empty-model-dir"),
    pytest.param(
        {"train_spec.max_stepz": 1}, "train_spec.max_stepz: unknown field", id="unknown-leaf"
    ),
    pytest.param({"epochs": 1}, "epochs: unknown field", id="unknown-top-level"),
    pytest.param(
        {"nosuch.field": 1},
        "invalid override 'nosuch.field': nosuch has no fields; name a field of the job spec, "
        "for example `train_spec.max_steps`",
        id="unknown-section",
    ),
    pytest.param(
        {"name.first": "x"}, "invalid override 'name.first': name has no fields", id="into-a-value"
    ),
    pytest.param(
        {"data_dir.x": "y"}, "invalid override 'data_dir.x': data_dir has no fields", id="into-none"
    ),
    pytest.param(
        {"train_spec.max_steps.x": 1}, "train_spec.max_steps has no fields", id="too-deep"
    ),
    pytest.param({"": 1}, "invalid override '': write a dotted field path", id="empty-path"),
    pytest.param({"train_spec.": 1}, "write a dotted field path", id="trailing-dot"),
    pytest.param({".name": "x"}, "write a dotted field path", id="leading-dot"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_OVERRIDES)
def test_with_overrides_rejects(changes: dict[str, Any], message: str) -> None:
    spec = parse_spec(minimal())
    with pytest.raises(SpecError) as caught:
        spec.with_overrides(changes)
    assert message in str(caught.value)


def test_a_json_file_is_read_as_json(tmp_path: Path) -> None:
    """Tab-indented JSON (as `json.dumps(..., indent="\\t")` writes it) is not YAML."""
    path = tmp_path / "job.json"
    path.write_text(json.dumps(minimal(), indent="\t"))
    assert load_spec(path) == parse_spec(minimal())


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: not valid YAML/JSON: it is not UTF-8 text"


@pytest.mark.parametrize(
    ("source", "missing"),
    [
        pytest.param("def build_model(ctx): ...\n", ["loss_fn", "train_input_fn", "eval_input_fn"]),
        pytest.param(
            "from keras.losses import mse as loss_fn\nimport numpy\n"
            "class build_model: ...\ntrain_input_fn = eval_input_fn = None\n",
            [],
            id="bound-by-import-class-and-assignment",
        ),
        pytest.param("from helpers import *\n", [], id="star-import-may-define-them"),
        pytest.param("def __getattr__(name): ...\n", [], id="module-getattr-may-define-them"),
        pytest.param(
            "if True:\n    def loss_fn(y, p): ...\n",
            ["build_model", "loss_fn", "train_input_fn", "eval_input_fn"],
            id="only-top-level-counts",
        ),
    ],
)
def test_a_trainer_module_is_checked_for_the_contract_by_its_source(
    source: str, missing: list[str]
) -> None:
    from tfdist.runtime.contract import undefined_in_source

    assert undefined_in_source(source) == missing


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param(
            {"trainer.env": {"A=B": "1"}},
            "trainer.env: 'A=B' cannot name an environment variable",
            id="env-name-with-equals",
        ),
        pytest.param(
            {"trainer.env": {"": "1"}},
            "trainer.env: '' cannot name an environment variable",
            id="empty-env-name",
        ),
        pytest.param(
            {"train_spec.max_steps": 2**63},
            "train_spec.max_steps: Input should be less than or equal to 9223372036854775807",
            id="steps-past-int64",
        ),
        pytest.param(
            {"train_spec.save_checkpoints_steps": 2**64},
            "train_spec.save_checkpoints_steps: Input should be less than or equal to",
            id="checkpoint-steps-past-int64",
        ),
    ],
)
def test_values_no_role_could_be_started_with_are_refused(
    changes: dict[str, Any], error: str
) -> None:
    spec = parse_spec(
        {
            "name": "j",
            "trainer": {"command": ["t"]},
            "model_dir": "m",
            "train_spec": {"max_steps": 1},
        }
    )
    with pytest.raises(SpecError) as refused:
        spec.with_overrides(changes)
    assert error in str(refused.value)
    largest = spec.with_overrides({"train_spec.max_steps": 2**63 - 1})
    assert largest.train_spec.max_steps == 2**63 - 1
