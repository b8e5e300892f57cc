"""How far a model's metrics are inside (or outside) each of the gate's thresholds, by value.

One `Margin` per bound: `min`, `max`, and each change limit against the deployed baseline.
A positive margin passes with room to spare; a negative one fails by that much. A blessed
decision lists them too: a version deployed 0.0034 below the one before, inside a -0.02 rule,
says so.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from tfdist.gate import Baseline, Direction, MetricThreshold, relative_change


class Margin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    rule: str  # "min 0.9", "change >= -0.02 vs version 1"
    actual: str  # what the rule bounds: "0.9566", "-0.0034 (0.96 -> 0.9566)"
    margin: float  # positive: inside the bound by this much; negative: outside
    shown: str  # the margin as the rule counts it: "+0.0566", "+1.66%"

    @property
    def passed(self) -> bool:
        """Inside its bound; a value at the bound passes up to float rounding, as in the gate."""
        return self.margin >= -1e-12


def _num(value: float) -> str:
    return f"{value:.4g}"


def margins(
    metrics: Mapping[str, float],
    thresholds: Mapping[str, MetricThreshold],
    baseline: Baseline | None,
) -> tuple[Margin, ...]:
    """Every bound of every threshold whose metric was measured, by metric name."""
    found = []
    for metric in sorted(thresholds):
        threshold, value = thresholds[metric], metrics.get(metric)
        if value is None:
            continue
        if threshold.min is not None:
            room = value - threshold.min
            found.append(
                Margin(
                    metric=metric,
                    rule=f"min {_num(threshold.min)}",
                    actual=_num(value),
                    margin=room,
                    shown=f"{room:+.4g}",
                )
            )
        if threshold.max is not None:
            room = threshold.max - value
            found.append(
                Margin(
                    metric=metric,
                    rule=f"max {_num(threshold.max)}",
                    actual=_num(value),
                    margin=room,
                    shown=f"{room:+.4g}",
                )
            )
        before = baseline.metrics.get(metric) if baseline else None
        change = threshold.change
        if change is None or before is None or baseline is None:
            continue
        lower = change.direction is Direction.LOWER_IS_BETTER
        sign = "<=" if lower else ">="
        versus = f"vs version {baseline.version}"
        moved = f"({_num(before)} -> {_num(value)})"
        if change.absolute is not None:
            actual = value - before
            room = change.absolute - actual if lower else actual - change.absolute
            found.append(
                Margin(
                    metric=metric,
                    rule=f"change {sign} {change.absolute:+g} {versus}",
                    actual=f"{actual:+.4g} {moved}",
                    margin=room,
                    shown=f"{room:+.4g}",
                )
            )
        if change.relative is not None:
            actual = relative_change(value, before)
            room = change.relative - actual if lower else actual - change.relative
            found.append(
                Margin(
                    metric=metric,
                    rule=f"relative change {sign} {change.relative * 100:+g}% {versus}",
                    actual=f"{actual * 100:+.4g}% {moved}",
                    margin=room,
                    shown=f"{room * 100:+.4g}%",
                )
            )
    return tuple(found)
