"""Two runs side by side, by value: which curves pair up, where they are drawn on the shared
axes, the legend, the runs to pick from, and the links that lead to the comparison."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tfdist_airflow.view.compare import (
    Comparison,
    Curve,
    RunChoice,
    comparison_chart,
    comparisons,
    render_comparison,
)
from tfdist_airflow.view.history import Version, render_history
from tfdist_airflow.view.model import Series, StepView, TrainingView
from tfdist_airflow.view.page import render_page
from tfdist_airflow.view.urls import compare_url

RUN_A, RUN_B = "manual__2026-12-06T10:00:00+00:00", "scheduled__2026-12-05"


Points = dict[str, list[tuple[int, float]]]


def view(run_id: str, training: Points, evaluation: Points, group: str = "train") -> TrainingView:
    def series(found: Points) -> tuple[Series, ...]:
        return tuple(Series(metric=m, points=tuple(points)) for m, points in found.items())

    step = StepView(
        group_id=group, model_dir=f"/m/{run_id}", roles=(), series=series(evaluation),
        decision=None, training=series(training),
    )  # fmt: skip
    return TrainingView(dag_id="nightly", run_id=run_id, run_state="success", steps=(step,))


def test_each_metric_of_either_run_pairs_both_runs_curves() -> None:
    this = view(RUN_A, {"training loss": [(0, 2.0), (200, 0.4)]},
                {"accuracy": [(100, 0.9), (200, 0.95)], "loss": [(200, 0.3)]})  # fmt: skip
    other = view(RUN_B, {}, {"auc": [(400, 0.97)], "accuracy": [(400, 0.96)]})

    found = comparisons(this, other)

    assert [(c.kind, c.title) for c in found] == [
        ("training", "training loss"),
        ("evaluation", "accuracy"),
        ("evaluation", "loss"),
        ("evaluation", "auc"),  # the other run's own metric comes after this run's
    ]
    accuracy = found[1]
    assert accuracy.curves == (
        Curve(run_id=RUN_A, points=((100, 0.9), (200, 0.95))),
        Curve(run_id=RUN_B, points=((400, 0.96),)),
    )
    assert found[0].curves[1].points == ()  # the other run wrote no training loss
    assert comparisons(this, view(RUN_B, {}, {}, group="another step")) == ()


def test_steps_pair_by_group_and_are_named_when_there_are_several() -> None:
    def two_steps(run_id: str) -> TrainingView:
        first, second = (view(run_id, {}, {"accuracy": [(1, 0.5)]}, g).steps[0] for g in "ab")
        return view(run_id, {}, {}).model_copy(update={"steps": (first, second)})

    assert [c.title for c in comparisons(two_steps(RUN_A), two_steps(RUN_B))] == [
        "a: accuracy",
        "b: accuracy",
    ]


def test_the_chart_draws_both_curves_on_shared_axes_with_a_legend() -> None:
    chart = comparison_chart(
        Comparison(
            title="accuracy",
            kind="evaluation",
            curves=(
                Curve(run_id=RUN_A, points=((0, 0.0), (100, 1.0))),
                Curve(run_id=RUN_B, points=((100, 0.5), (150, float("nan")))),
            ),
        )
    )
    # x: 0..150 over 392 px from 52; y: 0..1 padded by 8 % over 156 px from 28 (down)
    curves = re.findall(r'<polyline class="curve" data-run="([^"]+)" points="([^"]+)"', chart)
    assert curves == [(RUN_A, "52.0,173.2 313.3,38.8"), (RUN_B, "313.3,106.0")]
    assert 'stroke="#ef6c00" stroke-width="2" stroke-dasharray="6 3"' in chart
    assert f"<title>{RUN_B}, step 100: 0.5</title>" in chart  # hover values, NaN left out
    legend = re.findall(r'<g class="legend" data-run="[^"]+">.*?<text[^>]*>([^<]+)</text>', chart)
    assert legend == [f"{RUN_A} (this run)", RUN_B]
    assert '<text class="tick" x="444.0" y="200" text-anchor="middle">150</text>' in chart
    empty = comparison_chart(
        Comparison(title="auc", kind="evaluation", curves=(Curve(run_id="a", points=()),
                                                           Curve(run_id="b", points=((1, 1.0),))))
    )  # fmt: skip
    assert "a (this run) (no values)" in empty and empty.count('class="curve"') == 1


def test_the_page_draws_the_charts_and_offers_the_other_runs() -> None:
    this = view(RUN_A, {"training loss": [(0, 2.0)]}, {"accuracy": [(100, 0.9)]})
    other = view(RUN_B, {"training loss": [(0, 2.1)]}, {"accuracy": [(100, 0.8)]})
    choices = [
        RunChoice(run_id=RUN_A, state="success"),
        RunChoice(run_id=RUN_B, state="failed", start=datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)),
    ]

    page = render_comparison(this, other, choices)

    charts = re.findall(
        r'<svg class="chart comparison" data-metric="([^"]+)" data-kind="(\w+)"', page
    )
    assert charts == [("training loss", "training"), ("accuracy", "evaluation")]
    assert re.findall(r'<tr class="choice[^"]*" data-run="([^"]+)"', page) == [RUN_B]
    assert '<tr class="choice chosen"' in page
    assert '<a href="?with=scheduled__2026-12-05"><code>' in page
    assert "<td>failed</td><td>2026-12-05 01:02:03</td>" in page
    back = "../../training/nightly/manual__2026-12-06T10%3A00%3A00%2B00%3A00"
    assert f'<a id="back-link" href="{back}">' in page
    assert "<script" not in page

    picking = render_comparison(this, None, choices)
    assert "Pick a run of the same DAG" in picking and 'class="chart' not in picking
    alone = render_comparison(this, None, choices[:1])
    assert "nightly has no other run to compare with." in alone


def test_the_training_page_and_the_history_link_to_the_comparison() -> None:
    assert compare_url("nightly", RUN_A) == (
        "../../compare/nightly/manual__2026-12-06T10%3A00%3A00%2B00%3A00"
    )
    assert compare_url("d", "r", "r:2") == "../../compare/d/r?with=r%3A2"
    page = render_page(view(RUN_A, {}, {}), now=datetime(2026, 12, 6, tzinfo=UTC))
    assert f'<a id="compare-link" href="{compare_url("nightly", RUN_A)}">' in page

    def version(number: int, run_id: str) -> Version:
        return Version(version=number, run_id=run_id, deployed_at=datetime(2026, 12, 1, tzinfo=UTC),
                       global_step=400, metrics={}, changes={})  # fmt: skip

    rows = [version(3, RUN_A), version(2, RUN_B), version(1, "of-another-dag")]
    history = render_history("h", [("digits", rows)], RUN_A, "nightly", {RUN_A, RUN_B})
    links = re.findall(r'<a class="compare" href="([^"]+)">compare with this run</a>', history)
    assert links == [compare_url("nightly", RUN_A, RUN_B)]  # not to itself, nor another DAG's
