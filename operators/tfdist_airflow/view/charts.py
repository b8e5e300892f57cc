"""Server-side SVG charts for the Training view: an eval curve per metric and a role timeline.

Plain strings, no JavaScript and no external assets: the page works offline and inside the
sandboxed frame the Airflow UI gives plugin views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from tfdist.records import Admission
from tfdist_airflow.view.model import LineKind, RoleRow, Series

STATE_COLORS = {
    "success": "#2e7d32",
    "failed": "#c62828",
    "upstream_failed": "#e65100",
    "running": "#1565c0",
    "deferred": "#6a1b9a",
    "up_for_retry": "#f9a825",
    "queued": "#757575",
    "scheduled": "#9e9e9e",
    "skipped": "#f48fb1",
}
WORD_COLORS = {  # a role's state in the model's words (`tfdist_airflow.view.states.Word`)
    "queued": "#757575",
    "starting": "#0288d1",
    "running": "#1565c0",
    "restarting": "#f9a825",
    "preempted": "#ef6c00",
    "stopped": "#6d4c41",
    "failed": "#c62828",
    "done": "#2e7d32",
    "not run": "#9e9e9e",
}
LINE_STYLES = {
    LineKind.MIN: ("#c62828", "6 4"),
    LineKind.MAX: ("#c62828", "6 4"),
    LineKind.CHANGE: ("#ef6c00", "2 3"),
    LineKind.BASELINE: ("#1565c0", "10 3 2 3"),
}
CURVE = "#37474f"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def fmt(value: float) -> str:
    """A value as the charts print it: four significant digits."""
    return f"{value:.4g}"


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    if high == low:
        return (start + end) / 2
    return start + (value - low) / (high - low) * (end - start)


@dataclass(frozen=True)
class Plot:
    """A plot area: global steps 0..`x_high` across, values `y_low`..`y_high` (padded) up."""

    left: int
    top: int
    width: int  # of the plot area
    height: int
    x_high: float
    y_low: float
    y_high: float

    @classmethod
    def of(
        cls, left: int, top: int, width: int, height: int, steps: list[int], values: list[float]
    ) -> Plot:
        """The plot of these steps and values, the values padded by 8% of their range."""
        y_low, y_high = (min(values), max(values)) if values else (0.0, 1.0)
        pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0
        return cls(left, top, width, height, max([*steps, 1]), y_low - pad, y_high + pad)

    def x(self, step: float) -> float:
        return _scale(step, 0, self.x_high, self.left, self.left + self.width)

    def y(self, value: float) -> float:
        return _scale(value, self.y_low, self.y_high, self.top + self.height, self.top)

    def frame(self, svg: str, size: tuple[int, int], title: str, axis_y: float) -> list[str]:
        """The chart's opening (`svg`: its class and data attributes), title, plot area, value
        grid and ticks, step ticks and the `global step` axis label at `axis_y`."""
        width, height = size
        left, top = self.left, self.top
        right, bottom = left + self.width, top + self.height
        parts = [
            f'<svg {svg} xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}">',
            f'<text class="title" x="{left}" y="18">{title}</text>',
            f'<rect x="{left}" y="{top}" width="{self.width}" height="{self.height}" '
            'fill="#fafafa" stroke="#bdbdbd"/>',
        ]
        for tick in nice_ticks(self.y_low, self.y_high):
            ty = self.y(tick)
            parts.append(
                f'<line x1="{left}" x2="{right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#eee"/>'
                f'<text class="tick" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">'
                f"{fmt(tick)}</text>"
            )
        for tick in nice_ticks(0, self.x_high):
            parts.append(
                f'<text class="tick" x="{self.x(tick):.1f}" y="{bottom + 16}" '
                f'text-anchor="middle">{int(tick)}</text>'
            )
        parts.append(
            f'<text class="axis" x="{left + self.width / 2:.1f}" y="{axis_y}" '
            'text-anchor="middle">global step</text>'
        )
        return parts


def metric_chart(series: Series, width: int = 410, height: int = 220) -> str:
    """The metric against the global step, with the gate's lines dashed and labelled."""
    left, right, top, bottom = 48, 128, 28, 36
    finite = [(s, v) for s, v in series.points if math.isfinite(v)]
    values = [v for _, v in finite] + [line.value for line in series.lines]
    plot = Plot.of(
        left, top, width - left - right, height - top - bottom,
        [s for s, _ in series.points], values,
    )  # fmt: skip
    x, y, plot_w, plot_h = plot.x, plot.y, plot.width, plot.height
    metric = escape(series.metric)
    parts = plot.frame(
        f'class="chart metric" data-metric="{metric}"', (width, height), metric, height - 4
    )
    for line in series.lines:
        color, dash = LINE_STYLES[line.kind]
        ly = y(line.value)
        parts.append(
            f'<line class="gate-line {line.kind.value}" data-value="{line.value!r}" '
            f'x1="{left}" x2="{left + plot_w}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}"/>'
            f'<text class="line-label" x="{left + plot_w + 6}" y="{ly + 4:.1f}" fill="{color}">'
            f"{escape(line.label)}</text>"
        )
    if finite:
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in finite)
        parts.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{CURVE}" '
            'stroke-width="2"/>'
        )
        parts.extend(
            f'<circle class="point" cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{CURVE}">'
            f"<title>step {s}: {fmt(v)}</title></circle>"
            for s, v in finite
        )
    else:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            'text-anchor="middle">no finite values</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(
    roles: Sequence[RoleRow],
    now: datetime,
    width: int = 720,
    admission: Admission | None = None,
) -> str:
    """One bar per role from its start to its end (to `now` while it runs), coloured by state;
    above them, the launch's wait in its queue (Kueue), from queued to admitted."""
    left, right, top, row_h = 96, 16, 8, 24
    waited = _waited(admission, now)
    rows = len(roles) + (1 if waited else 0)
    starts = [r.start for r in roles if r.start] + ([waited[0]] if waited else [])
    height = top + row_h * max(rows, 1) + 24
    parts = [
        f'<svg class="chart timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="roles">'
    ]
    if not starts:
        parts.append(f'<text x="{left}" y="{top + 16}">no role has started yet</text></svg>')
        return "".join(parts)
    begin = min(starts)
    ends = [r.end or now for r in roles if r.start] + ([waited[1]] if waited else [])
    span = max((max(ends) - begin).total_seconds(), 1.0)
    plot_w = width - left - right

    def x(moment: datetime) -> float:
        return left + (moment - begin).total_seconds() / span * plot_w

    def bar(row: int, label: str, start: datetime, end: datetime, word: str, title: str) -> None:
        ry = top + row * row_h
        parts.append(
            f'<text class="role" x="{left - 8}" y="{ry + 16}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        x1, x2 = x(start), x(end)
        parts.append(
            f'<rect class="bar {escape(word)}" data-role="{escape(label)}" '
            f'x="{x1:.1f}" y="{ry + 4}" width="{max(x2 - x1, 2):.1f}" height="{row_h - 8}" '
            f'fill="{WORD_COLORS.get(word, "#9e9e9e")}" rx="3"><title>{escape(title)}</title>'
            "</rect>"
        )

    if waited and admission:
        queued, admitted = waited
        how = "waiting" if admission.waiting else "waited"
        secs = (admitted - queued).total_seconds()
        title = f"queue {admission.queue}: {how} {secs:.0f} s for admission"
        bar(0, "admission", queued, admitted, "queued", title)
    for row, role in enumerate(roles, start=1 if waited else 0):
        if role.start is None:
            parts.append(
                f'<text class="role" x="{left - 8}" y="{top + row * row_h + 16}" '
                f'text-anchor="end">{escape(role.role)}</text>'
            )
            continue
        text = f"{role.role}: {role.status.text}"
        bar(row, role.role, role.start, role.end or now, role.status.word.value, text)
    axis_y = top + row_h * rows + 16
    for tick in nice_ticks(0, span, 6):
        parts.append(
            f'<text class="tick" x="{left + tick / span * plot_w:.1f}" y="{axis_y}" '
            f'text-anchor="middle">{fmt(tick)} s</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _waited(admission: Admission | None, now: datetime) -> tuple[datetime, datetime] | None:
    """When the launch was queued and admitted (`now` while it waits)."""
    if admission is None:
        return None
    queued = datetime.fromtimestamp(admission.queued_at, UTC)
    if admission.admitted_at is None:
        return queued, max(now, queued)
    return queued, max(datetime.fromtimestamp(admission.admitted_at, UTC), queued)
