"""The gate's margins by value: every bound of every threshold, passed or failed, and the page
of a blessed run lists them."""

from __future__ import annotations

import pytest

from tfdist.gate import Baseline, GateSpec
from tfdist_airflow.view.margins import margins

THRESHOLDS = GateSpec.from_params(
    {
        "accuracy": {"min": 0.9, "change": {"direction": "higher_is_better", "absolute": -0.02}},
        "loss": {"max": 0.5, "change": {"direction": "lower_is_better", "relative": 0.1}},
        "auc": {"min": 0.8},  # not measured: no margin
    }
).thresholds
BASELINE = Baseline(version=1, metrics={"accuracy": 0.96, "loss": 0.3}, model_dir="/m1")


def test_every_bound_with_its_margin() -> None:
    found = margins({"accuracy": 0.9566, "loss": 0.34}, THRESHOLDS, BASELINE)
    assert [(m.metric, m.rule, m.actual, m.shown, m.passed) for m in found] == [
        ("accuracy", "min 0.9", "0.9566", "+0.0566", True),
        # 0.0034 below version 1, inside the -0.02 rule by 0.0166
        ("accuracy", "change >= -0.02 vs version 1", "-0.0034 (0.96 -> 0.9566)", "+0.0166", True),
        ("loss", "max 0.5", "0.34", "+0.16", True),
        # loss rose 13.3%, the rule allows 10%: 3.33 points outside
        ("loss", "relative change <= +10% vs version 1", "+13.33% (0.3 -> 0.34)", "-3.333%", False),
    ]
    assert [m.margin for m in found] == pytest.approx([0.0566, 0.0166, 0.16, 0.1 - 0.04 / 0.3])


def test_without_a_baseline_only_value_bounds_count() -> None:
    found = margins({"accuracy": 0.85}, THRESHOLDS, None)
    assert [(m.rule, m.shown, m.passed) for m in found] == [("min 0.9", "-0.05", False)]


def test_a_value_at_its_bound_passes() -> None:
    (at_min,) = margins({"accuracy": 0.9}, {"accuracy": THRESHOLDS["accuracy"]}, None)
    assert at_min.passed and at_min.shown == "+0"
