"""The Training view as one self-contained HTML page (inline CSS and SVG, no scripts)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote

from tfdist_airflow.view.charts import STATE_COLORS, WORD_COLORS, metric_chart, timeline_chart
from tfdist_airflow.view.margins import Margin
from tfdist_airflow.view.model import Decision, RoleRow, StepView, TrainingView
from tfdist_airflow.view.states import Status
from tfdist_airflow.view.urls import HISTORY_ROUTE, compare_url, console_url, tensorboard_url

REFRESH_SECS = 15
UNFINISHED = ("queued", "running")
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#212121;
font-size:14px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:17px;margin:20px 0 8px}
h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #e0e0e0;
text-align:left}th{font-weight:600;background:#f5f5f5}td.num{text-align:right;
font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px}
.decision{padding:10px 14px;border-radius:6px;margin:8px 0}
.blessed{background:#e8f5e9;border:1px solid #2e7d32}
.not-blessed{background:#ffebee;border:1px solid #c62828}
.pending{background:#f5f5f5;border:1px solid #9e9e9e}
.decision strong{font-size:16px}.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart text{font-size:11px;fill:#424242}.chart text.title{font-size:13px;font-weight:600}
code{background:#f5f5f5;padding:1px 4px;border-radius:3px}.problems{color:#b71c1c}
.muted{color:#757575}td.pass{color:#2e7d32}td.fail{color:#c62828}
table.margins{margin-top:6px;background:#fff}.outcome{font-size:16px;margin:0 0 12px}
"""


NONE = "&#8211;"  # an en dash


def _time(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else NONE


def _state(state: str | None) -> str:
    label = state or "none"
    color = STATE_COLORS.get(label, "#9e9e9e")
    return f'<span class="state" style="background:{color}">{escape(label)}</span>'


def _status(status: Status) -> str:
    color = WORD_COLORS.get(status.word.value, "#9e9e9e")
    return (
        f'<span class="state status" data-word="{escape(status.word.value)}" '
        f'style="background:{color}">{escape(status.text)}</span>'
    )


def _path(path: str) -> str:
    url = console_url(path)
    shown = f"<code>{escape(path)}</code>"
    return f'<a href="{escape(url)}" target="_blank" rel="noopener">{shown}</a>' if url else shown


def _rate(role: RoleRow) -> str:
    if role.steps_per_sec is None:
        return NONE
    unit = "" if role.rate_unit == "steps" else f" {escape(role.rate_unit)}/s"
    return f"{role.steps_per_sec:.1f}{unit}"


def _roles_table(roles: tuple[RoleRow, ...]) -> str:
    head = (
        "<tr><th>role</th><th>state</th><th>task</th><th>start (UTC)</th><th>end (UTC)</th>"
        "<th>restarts</th><th>last step</th><th>steps/s</th></tr>"
    )
    rows = "".join(
        f'<tr class="role-row" data-role="{escape(r.role)}"><td>{escape(r.role)}</td>'
        f'<td>{_status(r.status)}</td><td class="muted">{escape(r.state)}</td>'
        f"<td>{_time(r.start)}</td><td>{_time(r.end)}</td>"
        f'<td class="num">{r.restarts}</td>'
        f'<td class="num">{NONE if r.last_step is None else r.last_step}</td>'
        f'<td class="num">{_rate(r)}</td>'
        "</tr>"
        for r in roles
    )
    return f'<table class="roles">{head}{rows}</table>'


def _decision(decision: Decision | None, gate_state: str | None, run_over: bool) -> str:
    if decision is None:
        title = (
            "No gate decision: the run ended before the gate decided"
            if run_over
            else ("No gate decision yet")
        )
        return (
            f'<div class="decision pending" id="decision"><strong>{title}</strong>'
            f" (gate task: {escape(gate_state or 'not run')})</div>"
        )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(decision.metrics.items()))
    baseline = (
        f"against deployed version {decision.baseline_version}"
        if decision.baseline_version is not None
        else "no deployed baseline"
    )
    kind, title = ("blessed", "BLESSED") if decision.blessed else ("not-blessed", "NOT BLESSED")
    items = "".join(f'<li class="reason">{escape(r)}</li>' for r in decision.reasons)
    notes = "".join(f'<li class="note muted">{escape(n)}</li>' for n in decision.notes)
    return (
        f'<div class="decision {kind}" id="decision"><strong>{title}</strong> at step '
        f"{decision.global_step} ({escape(metrics)}; {baseline})"
        f"{f'<ul>{items}{notes}</ul>' if items or notes else ''}{_margins(decision.margins)}</div>"
    )


def _margins(found: tuple[Margin, ...]) -> str:
    """Each threshold's bound, what it bounds and by how much it passed or failed."""
    if not found:
        return ""
    rows = "".join(
        f'<tr class="margin"><td>{escape(m.metric)}</td><td>{escape(m.rule)}</td>'
        f'<td class="num">{escape(m.actual)}</td>'
        f'<td class="num {"pass" if m.passed else "fail"}">{escape(m.shown)}</td></tr>'
        for m in found
    )
    head = "<tr><th>metric</th><th>threshold</th><th>value</th><th>margin</th></tr>"
    return f'<table class="margins">{head}{rows}</table>'


def _deployed(step: StepView, view: TrainingView) -> str:
    if step.deployed is None:
        state = step.deploy_state or "not run"
        return f'<p id="deployed">Not deployed (deploy task: {escape(state)}).</p>'
    d = step.deployed
    # From this page (`<prefix>/training/<dag>/<run>`) to `<prefix>/history/<dag>/<run>`, in the
    # same frame (the UI's frames may not navigate the page around them); relative, so that a
    # proxy's path prefix is kept.
    history = f"../../{HISTORY_ROUTE}/{quote(view.dag_id, safe='')}/{quote(view.run_id, safe='')}"
    return (
        f'<p id="deployed">Deployed <strong>{escape(d.model_name)} version {d.version}</strong>'
        f' at {_path(d.path)} (<a id="history-link" href="{escape(history)}">model history</a>)'
        "</p>"
    )


def _training(step: StepView) -> str:
    if not step.training:
        return ""
    charts = "".join(metric_chart(series) for series in step.training)
    return f'<h3>Training</h3><div class="charts training">{charts}</div>'


def _tensorboard(step: StepView, template: str, dag_id: str, run_id: str) -> str:
    """A link to the configured TensorBoard, else how to start one on the model directory."""
    if not step.model_dir:
        return ""
    if template:
        url = tensorboard_url(template, model_dir=step.model_dir, dag_id=dag_id, run_id=run_id)
        return (
            f'<p id="tensorboard"><a href="{escape(url)}" target="_blank" rel="noopener">'
            "Open in TensorBoard</a></p>"
        )
    return (
        f'<p id="tensorboard" class="muted">TensorBoard: <code>tensorboard --logdir '
        f"{escape(step.model_dir)}</code> (set <code>[tfdist] tensorboard_url</code> to link "
        "one here)</p>"
    )


def _step(
    step: StepView, now: datetime, run_over: bool, tensorboard: str, view: TrainingView
) -> str:
    charts = "".join(metric_chart(series) for series in step.series) or (
        f'<p class="muted">No evaluation records{"" if run_over else " yet"}.</p>'
    )
    problems = "".join(f"<li>{escape(p)}</li>" for p in step.problems)
    return (
        f'<section class="step" data-group="{escape(step.group_id)}">'
        f"<h2>{escape(step.group_id)}</h2>"
        f"{_decision(step.decision, step.gate_state, run_over)}{_deployed(step, view)}"
        f'<p id="model">Model directory {_path(step.model_dir)}</p>'
        f"{_tensorboard(step, tensorboard, view.dag_id, view.run_id)}"
        f"{step.goodput_html}"
        f"<h3>Roles</h3>{_roles_table(step.roles)}"
        f"{timeline_chart(step.roles, now, admission=step.admission)}"
        f"{_training(step)}"
        f'<h3>Evaluation</h3><div class="charts">{charts}</div>'
        f"{f'<ul class=problems>{problems}</ul>' if problems else ''}</section>"
    )


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _outcome(view: TrainingView) -> str:
    """The run's outcome in one sentence per step, at the top."""
    sentences = [step for step in view.steps if step.sentence]
    if not sentences:
        return ""
    if len(sentences) == 1:
        return f'<p class="outcome" id="outcome">{escape(_first_upper(sentences[0].sentence))}</p>'
    items = "".join(
        f"<li><strong>{escape(step.group_id)}</strong>: {escape(step.sentence)}</li>"
        for step in sentences
    )
    return f'<ul class="outcome" id="outcome">{items}</ul>'


def render_page(view: TrainingView, now: datetime, tensorboard: str = "") -> str:
    """The whole page; `now` ends the bars of roles still running. The page of an unfinished
    run reloads itself every `REFRESH_SECS`."""
    run_over = view.run_state not in (*UNFINISHED, None)
    body = "".join(_step(step, now, run_over, tensorboard, view) for step in view.steps) or (
        "<p>This run has no train-and-evaluate step, or its launch task has not run yet.</p>"
    )
    title = f"Training: {view.dag_id} / {view.run_id}"
    refresh = (
        f'<meta http-equiv="refresh" content="{REFRESH_SECS}">'
        if view.run_state in UNFINISHED
        else ""
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)} {_state(view.run_state)}</h1>{_outcome(view)}"
        f'<p><a id="compare-link" href="{escape(compare_url(view.dag_id, view.run_id))}">'
        f"Compare with another run</a></p>{body}</body></html>"
    )
