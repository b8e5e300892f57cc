"""The Model files tab: what each step's model directory holds, by kind (checkpoints, eval
records, TensorBoard events, the export, the blessing, progress records), as one HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pydantic import BaseModel, ConfigDict

from tfdist_airflow.view.page import STYLE
from tfdist_airflow.view.urls import console_url

MAX_SHOWN = 1000  # files listed per directory; the rest are counted
KINDS = (  # (kind, test on the path relative to the model directory), first match wins
    ("blessing", lambda p: p.startswith("blessing/")),
    ("export", lambda p: p.startswith("export/")),
    ("eval record", lambda p: p.rsplit("/", 1)[-1].startswith("record-")),
    ("TensorBoard events", lambda p: "events.out.tfevents." in p),
    ("progress record", lambda p: p.startswith("tfdist/progress/")),
    ("checkpoint", lambda p: "ckpt-" in p or p.rsplit("/", 1)[-1] == "checkpoint"),
)


def kind_of(relative: str) -> str:
    return next((kind for kind, test in KINDS if test(relative)), "other")


class Listing(BaseModel):
    """One model directory's files (relative paths, sorted), or why they could not be listed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: str
    files: tuple[str, ...] = ()
    problem: str = ""


def listing(model_dir: str, paths: Sequence[str], problem: str = "") -> Listing:
    prefix = model_dir.rstrip("/") + "/"
    files = tuple(sorted(path.removeprefix(prefix) for path in paths))
    return Listing(model_dir=model_dir, files=files, problem=problem)


def counts(found: Listing) -> dict[str, int]:
    """Files per kind."""
    counted: dict[str, int] = {}
    for relative in found.files:
        kind = kind_of(relative)
        counted[kind] = counted.get(kind, 0) + 1
    return counted


def _listing(found: Listing) -> str:
    where = escape(found.model_dir)
    url = console_url(found.model_dir)
    heading = f'<a href="{escape(url)}" target="_blank">{where}</a>' if url else where
    if found.problem:
        return f'<h2>{heading}</h2><p class="problems">{escape(found.problem)}</p>'
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(counts(found).items()))
    rows = "".join(
        f'<tr class="file"><td><code>{escape(relative)}</code></td>'
        f"<td>{escape(kind_of(relative))}</td></tr>"
        for relative in found.files[:MAX_SHOWN]
    )
    more = len(found.files) - MAX_SHOWN
    tail = f'<p class="muted">and {more} more files</p>' if more > 0 else ""
    return (
        f'<section class="listing"><h2>{heading}</h2>'
        f"<p>{len(found.files)} files: {escape(summary) or 'none yet'}</p>"
        f"<table><tr><th>file</th><th>kind</th></tr>{rows}</table>{tail}</section>"
    )


def render_files(title: str, listings: Sequence[Listing]) -> str:
    body = "".join(_listing(found) for found in listings) or (
        "<p>This run has no model directory yet: its launch task has not run.</p>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )
