"""The Model history tab: every deployed version of the run's model, newest first, each with
the run that trained it, its metrics and their change from the version before, and the gate's
margins against its baseline (from that run's blessing), as one HTML page."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from pydantic import BaseModel, ConfigDict

from tfdist.deploy import Deployment
from tfdist.gate import Blessing
from tfdist_airflow.view.margins import Margin, margins
from tfdist_airflow.view.page import STYLE
from tfdist_airflow.view.urls import compare_url


class Version(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    run_id: str
    deployed_at: datetime
    global_step: int
    metrics: dict[str, float]
    changes: dict[str, float]  # metric -> this version's value minus the version before's
    margins: tuple[Margin, ...] = ()  # the gate's, against the baseline it compared with
    baseline_version: int | None = None


def history(
    deployed: Sequence[Deployment], blessings: Mapping[int, Blessing | None]
) -> tuple[Version, ...]:
    """The versions newest first; `blessings`: each version's run's gate decision, if read."""
    ordered = sorted(deployed, key=lambda d: d.version, reverse=True)
    rows = []
    for index, deployment in enumerate(ordered):
        before = ordered[index + 1] if index + 1 < len(ordered) else None
        changes = {
            metric: value - before.metrics[metric]
            for metric, value in deployment.metrics.items()
            if before is not None and metric in before.metrics
        }
        blessing = blessings.get(deployment.version)
        rows.append(
            Version(
                version=deployment.version,
                run_id=deployment.run_id,
                deployed_at=datetime.fromtimestamp(deployment.deployed_at, UTC),
                global_step=deployment.global_step,
                metrics=deployment.metrics,
                changes=changes,
                margins=margins(blessing.metrics, blessing.thresholds, blessing.baseline)
                if blessing
                else (),
                baseline_version=blessing.baseline.version
                if blessing and blessing.baseline
                else None,
            )
        )
    return tuple(rows)


def _metrics(row: Version) -> str:
    parts = []
    for metric, value in sorted(row.metrics.items()):
        change = row.changes.get(metric)
        delta = f' <span class="muted">({change:+.4g})</span>' if change is not None else ""
        parts.append(f"{escape(metric)} {value:.4g}{delta}")
    return "<br>".join(parts)


def _margins(row: Version) -> str:
    if not row.margins:
        return '<span class="muted">not recorded</span>'
    return "<br>".join(
        f'<span class="{"pass" if m.passed else "fail"}">{escape(m.metric)} {escape(m.rule)}: '
        f"{escape(m.shown)}</span>"
        for m in row.margins
    )


def _run(row: Version, dag_id: str, run_id: str, comparable: Collection[str]) -> str:
    """The version's run, with a link that draws its curves with this run's where it is
    another run of this DAG."""
    shown = f"<code>{escape(row.run_id)}</code>"
    if row.run_id == run_id or row.run_id not in comparable:
        return shown
    url = compare_url(dag_id, run_id, row.run_id)
    return f'{shown} <a class="compare" href="{escape(url)}">compare with this run</a>'


def _section(
    model: str, rows: Sequence[Version], run_id: str, dag_id: str, comparable: Collection[str]
) -> str:
    head = (
        "<tr><th>version</th><th>run</th><th>deployed (UTC)</th><th>step</th>"
        "<th>metrics (change from the version before)</th><th>gate margins</th></tr>"
    )
    body = "".join(
        f'<tr class="version{" this-run" if row.run_id == run_id else ""}" '
        f'data-version="{row.version}"><td class="num">{row.version}</td>'
        f"<td>{_run(row, dag_id, run_id, comparable)}</td>"
        f'<td>{row.deployed_at:%Y-%m-%d %H:%M:%S}</td><td class="num">{row.global_step}</td>'
        f"<td>{_metrics(row)}</td><td>{_margins(row)}</td></tr>"
        for row in rows
    )
    table = (
        f'<table class="history">{head}{body}</table>'
        if rows
        else "<p>No version is deployed yet.</p>"
    )
    return f'<section class="model"><h2>{escape(model)}</h2>{table}</section>'


def render_history(
    title: str,
    models: Sequence[tuple[str, Sequence[Version]]],
    run_id: str,
    dag_id: str = "",
    comparable: Collection[str] = (),
) -> str:
    """The page: per model its versions; the row of the version `run_id` deployed is marked,
    a version trained by one of the `comparable` runs of `dag_id` links to the comparison."""
    sections = "".join(
        _section(model, rows, run_id, dag_id, comparable) for model, rows in models
    ) or ("<p>This DAG has no gate task that names a model.</p>")
    style = (
        f"{STYLE}tr.this-run td{{background:#e3f2fd}}.pass{{color:#2e7d32}}.fail{{color:#c62828}}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{escape(title)}</h1>{sections}</body></html>"
    )
