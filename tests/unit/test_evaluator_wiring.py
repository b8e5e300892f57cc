"""The evaluator role is wired to the spec: its loop gets the spec's `max_steps`, start delay
and throttle, and the steps already evaluated (the loop itself is `test_eval_loop.py`).

A lower `max_steps` here would end the evaluator one checkpoint early whenever a checkpoint
falls between the two values; the loop's own tests cannot see that.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tfdist.spec import parse_spec

evaluate = pytest.importorskip("tfdist.runtime.evaluate")  # needs the trainer extra


def test_the_evaluator_loop_gets_the_specs_stop_condition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"command": ["train"]},
            "train_spec": {"max_steps": 4001},
            "eval_spec": {"start_delay_secs": 7, "throttle_secs": 11},
            "model_dir": str(tmp_path),
        }
    )
    seen: dict[str, Any] = {}

    def follow(checkpoints: Any, run: Any, **kwargs: Any) -> None:
        seen.update(kwargs, model_dir=checkpoints.model_dir)

    monkeypatch.setattr(evaluate, "follow_checkpoints", follow)
    monkeypatch.setattr(
        evaluate, "Evaluation", lambda *_: SimpleNamespace(eval_dir="eval", run=None)
    )
    monkeypatch.setattr(evaluate, "evaluated_steps", lambda eval_dir: {1000, 2000})

    evaluate.run_evaluator(spec, trainer=None, ctx=None)

    assert seen == {
        "model_dir": str(tmp_path),
        "done": {1000, 2000},
        "max_steps": 4001,
        "start_delay_secs": 7,
        "throttle_secs": 11,
    }
