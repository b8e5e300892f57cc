"""Two runs of a DAG side by side: each metric's curves of both runs on the same axes, with a
legend, as one HTML page (inline SVG, no scripts), and the list of runs to pick the other from.

Built by value from two `TrainingView`s: the training curves (loss, learning rate, steps/s)
and the evaluation curves of the train-and-evaluate steps both runs have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from tfdist_airflow.view.charts import Plot, fmt
from tfdist_airflow.view.model import Series, TrainingView
from tfdist_airflow.view.page import STYLE
from tfdist_airflow.view.urls import VIEW_ROUTE

CHOSEN = "tr.chosen td{background:#fff3e0}"  # the run drawn beside this one, in the list
# This run's curve, then the other's: told apart by colour and by dash, in the legend too.
CURVE_STYLES = (("#1565c0", ""), ("#ef6c00", "6 3"))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Curve(_Frozen):
    run_id: str
    points: tuple[tuple[int, float], ...]


class Comparison(_Frozen):
    """One metric of one step: this run's curve first, then the other run's."""

    title: str
    kind: str  # "training" or "evaluation"
    curves: tuple[Curve, Curve]


class RunChoice(_Frozen):
    """A run of the DAG to compare with."""

    run_id: str
    state: str | None
    start: datetime | None = None


def _pairs(
    this: Sequence[Series], other: Sequence[Series]
) -> list[tuple[str, tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]]:
    """Each metric of either run (this run's order, then the other's new ones) with both
    runs' points; a metric one run lacks has no points for it."""
    mine = {series.metric: series.points for series in this}
    theirs = {series.metric: series.points for series in other}
    metrics = [*mine, *(metric for metric in theirs if metric not in mine)]
    return [(metric, mine.get(metric, ()), theirs.get(metric, ())) for metric in metrics]


def comparisons(this: TrainingView, other: TrainingView) -> tuple[Comparison, ...]:
    """Per step both runs have (by group id), its training metrics, then its eval metrics."""
    theirs = {step.group_id: step for step in other.steps}
    shared = [(step, theirs[step.group_id]) for step in this.steps if step.group_id in theirs]
    found: list[Comparison] = []
    for mine, their in shared:
        prefix = f"{mine.group_id}: " if len(shared) > 1 else ""
        for kind, a, b in (
            ("training", mine.training, their.training),
            ("evaluation", mine.series, their.series),
        ):
            found.extend(
                Comparison(
                    title=prefix + metric,
                    kind=kind,
                    curves=(
                        Curve(run_id=this.run_id, points=points_a),
                        Curve(run_id=other.run_id, points=points_b),
                    ),
                )
                for metric, points_a, points_b in _pairs(a, b)
            )
    return tuple(found)


def comparison_chart(comparison: Comparison, width: int = 460, height: int = 270) -> str:
    """Both runs' curves against the global step on shared axes, a legend under the plot."""
    left, right, top, bottom = 52, 16, 28, 86
    finite = [[(s, v) for s, v in curve.points if math.isfinite(v)] for curve in comparison.curves]
    plot = Plot.of(
        left, top, width - left - right, height - top - bottom,
        [s for curve in comparison.curves for s, _ in curve.points],
        [v for points in finite for _, v in points],
    )  # fmt: skip
    x, y, plot_h = plot.x, plot.y, plot.height
    title = escape(comparison.title)
    svg = f'class="chart comparison" data-metric="{title}" data-kind="{comparison.kind}"'
    parts = plot.frame(svg, (width, height), title, top + plot_h + 32)
    for index, (curve, points) in enumerate(zip(comparison.curves, finite, strict=True)):
        color, dash = CURVE_STYLES[index]
        run = escape(curve.run_id)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        if points:
            path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
            parts.append(
                f'<polyline class="curve" data-run="{run}" points="{path}" fill="none" '
                f'stroke="{color}" stroke-width="2"{dashes}/>'
            )
            parts.extend(
                f'<circle class="point" cx="{x(s):.1f}" cy="{y(v):.1f}" r="2.5" '
                f'fill="{color}"><title>{run}, step {s}: {fmt(v)}</title></circle>'
                for s, v in points
            )
        ly = top + plot_h + 52 + index * 18
        label = f"{run}{' (this run)' if index == 0 else ''}"
        if not points:
            label += " (no values)"
        parts.append(
            f'<g class="legend" data-run="{run}"><line x1="{left}" x2="{left + 28}" '
            f'y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"{dashes}/>'
            f'<text x="{left + 36}" y="{ly}">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _picker(dag_id: str, run_id: str, choices: Sequence[RunChoice], other: str | None) -> str:
    """The DAG's other runs, each a link that compares this run with it."""
    rows = "".join(
        f'<tr class="choice{" chosen" if choice.run_id == other else ""}" '
        f'data-run="{escape(choice.run_id)}"><td><a href="?with={quote(choice.run_id, safe="")}">'
        f"<code>{escape(choice.run_id)}</code></a></td><td>{escape(choice.state or 'none')}</td>"
        f"<td>{f'{choice.start:%Y-%m-%d %H:%M:%S}' if choice.start else ''}</td></tr>"
        for choice in choices
        if choice.run_id != run_id
    )
    if not rows:
        return f"<p>{escape(dag_id)} has no other run to compare with.</p>"
    head = "<tr><th>run</th><th>state</th><th>started (UTC)</th></tr>"
    return f'<table class="runs">{head}{rows}</table>'


def render_comparison(
    this: TrainingView,
    other: TrainingView | None,
    choices: Sequence[RunChoice],
) -> str:
    """The page at `<prefix>/compare/<dag>/<run>?with=<other run>`: the charts when another run
    is chosen, and the runs to choose from."""
    back = f"../../{VIEW_ROUTE}/{quote(this.dag_id, safe='')}/{quote(this.run_id, safe='')}"
    title = f"Compare: {this.dag_id} / {this.run_id}"
    if other is None:
        body = "<p>Pick a run of the same DAG to draw its curves with this run's.</p>"
    else:
        found = comparisons(this, other)
        sections = []
        for kind in ("training", "evaluation"):
            charts = "".join(comparison_chart(c) for c in found if c.kind == kind)
            if charts:
                sections.append(f'<h2>{kind.capitalize()}</h2><div class="charts">{charts}</div>')
        body = "".join(sections) or (
            "<p>The two runs have no train-and-evaluate step with curves in common.</p>"
        )
    picker = _picker(this.dag_id, this.run_id, choices, other.run_id if other else None)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}{CHOSEN}</style></head><body>"
        f'<h1>{escape(title)}</h1><p><a id="back-link" href="{escape(back)}">back to this '
        f"run's training</a></p>{body}<h2>Other runs</h2>{picker}</body></html>"
    )
