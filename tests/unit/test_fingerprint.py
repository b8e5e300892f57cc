"""The spec fingerprint that tags a model directory, and the check before resuming one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tfdist.fingerprint import (
    FINGERPRINT_FILE,
    FingerprintMismatch,
    SpecFingerprint,
    claim_model_dir,
    spec_fingerprint,
    training_output,
)
from tfdist.spec import JobSpec, parse_spec
from tfdist.storage import LocalStorage

DIGITS = "d1fdf9fad785cbf1f3f4d1528531f712a8843f555a3b41f2d3d897fe9cd414fd"
COMMAND = "0bd335f14fc06b7aaa33569168356195862273f3d7e23ee0c6ff0046e82ddab0"


def spec(model_dir: str = "/models/digits", **changes: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 400, "save_checkpoints_steps": 100},
        "eval_spec": {"steps": 20, "start_delay_secs": 0, "throttle_secs": 5},
        "model_dir": model_dir,
        "data_dir": "/data/2026-01-01",
    }
    return parse_spec({**data, **changes})


def test_fingerprint_by_value() -> None:
    assert spec_fingerprint(spec()) == SpecFingerprint(
        digest=DIGITS,
        fields={
            "checkpoint_format": 1,
            "trainer.entrypoint": "tfdist.examples.digits",
            "trainer.command": None,
        },
    )
    command = spec(trainer={"command": ["python", "train.py"]})
    assert spec_fingerprint(command).digest == COMMAND


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"train_spec": {"max_steps": 800}}, id="more-steps"),
        pytest.param({"train_spec": {"max_steps": 400, "save_checkpoints_steps": 50}}, id="ckpt"),
        pytest.param({"eval_spec": {"steps": 5, "throttle_secs": 60}}, id="eval"),
        pytest.param({"cluster": {"worker": 4, "evaluator": 1}}, id="cluster"),
        pytest.param({"data_dir": "/data/2026-01-02"}, id="data"),
        pytest.param({"name": "digits-v2"}, id="name"),
        pytest.param({"model_dir": "/elsewhere"}, id="model-dir"),
        pytest.param(
            {"trainer": {"entrypoint": "tfdist.examples.digits", "env": {"TOKEN": "x"}}},
            id="env",
        ),
    ],
)
def test_what_may_change_when_resuming(changes: dict[str, Any]) -> None:
    assert spec_fingerprint(spec(**changes)).digest == DIGITS


@pytest.mark.parametrize(
    "trainer",
    [
        pytest.param({"entrypoint": "my.other.model"}, id="entrypoint"),
        pytest.param({"command": ["python", "train.py"]}, id="command"),
    ],
)
def test_another_trainer_changes_the_fingerprint(trainer: dict[str, Any]) -> None:
    assert spec_fingerprint(spec(trainer=trainer)).digest != DIGITS


def test_claim_tags_a_new_directory_then_accepts_a_compatible_spec(tmp_path: Path) -> None:
    storage = LocalStorage()
    first = spec(str(tmp_path / "model"))
    claim_model_dir(storage, first)
    tag = tmp_path / "model" / FINGERPRINT_FILE
    assert SpecFingerprint.model_validate_json(tag.read_text()).digest == DIGITS

    claim_model_dir(storage, spec(str(tmp_path / "model"), train_spec={"max_steps": 900}))
    assert SpecFingerprint.model_validate_json(tag.read_text()).digest == DIGITS


def test_claim_refuses_another_trainer_naming_both(tmp_path: Path) -> None:
    storage = LocalStorage()
    model_dir = str(tmp_path / "model")
    claim_model_dir(storage, spec(model_dir))
    (tmp_path / "model" / "ckpt-100.index").write_text("")

    with pytest.raises(FingerprintMismatch) as refused:
        claim_model_dir(storage, spec(model_dir, trainer={"entrypoint": "my.other.model"}))

    assert str(refused.value) == (
        f"model_dir {model_dir} holds checkpoints of another trainer (trainer.entrypoint was "
        "'tfdist.examples.digits', is now 'my.other.model'); resuming them would mix two "
        "models. Use a new model_dir, or delete this one to start over"
    )


def test_claim_rewrites_an_empty_tag(tmp_path: Path) -> None:
    """A launch that died between creating the tag and writing it."""
    tag = tmp_path / "model" / FINGERPRINT_FILE
    tag.parent.mkdir(parents=True)
    tag.write_text("")

    claim_model_dir(LocalStorage(), spec(str(tmp_path / "model")))

    assert SpecFingerprint.model_validate_json(tag.read_text()).digest == DIGITS


def test_a_tag_without_training_output_takes_the_corrected_trainer(tmp_path: Path) -> None:
    """A launch refused or failed before its roles wrote anything never blocks the next one."""
    storage = LocalStorage()
    model_dir = str(tmp_path / "model")
    claim_model_dir(storage, spec(model_dir, trainer={"entrypoint": "tfdist.examples.digitz"}))
    (tmp_path / "model" / ".tfdist-preflight-0123").write_text("")  # a probe left behind

    claim_model_dir(storage, spec(model_dir))

    tag = tmp_path / "model" / FINGERPRINT_FILE
    assert SpecFingerprint.model_validate_json(tag.read_text()).digest == DIGITS
    assert training_output(storage, model_dir) == []
    (tmp_path / "model" / "eval").mkdir()
    (tmp_path / "model" / "eval" / "record-1.json").write_text("{}")
    assert training_output(storage, model_dir) == [f"{model_dir}/eval/record-1.json"]
    with pytest.raises(FingerprintMismatch):
        claim_model_dir(storage, spec(model_dir, trainer={"command": ["python", "t.py"]}))


def test_an_unreadable_tag_binds_only_a_trained_directory(tmp_path: Path) -> None:
    storage = LocalStorage()
    model_dir = str(tmp_path / "model")
    tag = tmp_path / "model" / FINGERPRINT_FILE
    tag.parent.mkdir(parents=True)
    tag.write_text("{not json")

    claim_model_dir(storage, spec(model_dir))
    assert SpecFingerprint.model_validate_json(tag.read_text()).digest == DIGITS

    tag.write_text("{not json")
    (tmp_path / "model" / "checkpoint").write_text("")
    with pytest.raises(FingerprintMismatch) as refused:
        claim_model_dir(storage, spec(model_dir))
    assert str(refused.value) == (
        f"model_dir {model_dir} holds a trainer's output ({model_dir}/checkpoint) but its "
        f"fingerprint ({model_dir}/{FINGERPRINT_FILE}) is unreadable; use a new model_dir, or "
        "delete this one to start over"
    )
