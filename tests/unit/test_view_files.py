"""The Model files tab by value: each file's kind, the counts, the cap on files listed."""

from __future__ import annotations

import pytest

from tfdist_airflow.view import files
from tfdist_airflow.view.files import counts, kind_of, listing, render_files


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("checkpoint", "checkpoint"),
        ("ckpt-200.index", "checkpoint"),
        ("ckpt-200.data-00000-of-00001", "checkpoint"),
        ("eval/record-000000000200.json", "eval record"),
        ("eval/events.out.tfevents.1.host.1.v2", "TensorBoard events"),
        ("events.out.tfevents.1.host.0.v2", "TensorBoard events"),
        ("export/200/saved_model.pb", "export"),
        ("blessing/BLESSED", "blessing"),
        ("tfdist/progress/chief-0.json", "progress record"),
        ("notes.txt", "other"),
    ],
)
def test_kinds(relative: str, kind: str) -> None:
    assert kind_of(relative) == kind


def test_a_listing_is_relative_to_its_model_directory() -> None:
    found = listing("/m/run-1", ["/m/run-1/eval/record-1.json", "/m/run-1/checkpoint"])
    assert found.files == ("checkpoint", "eval/record-1.json")
    assert counts(found) == {"checkpoint": 1, "eval record": 1}
    page = render_files("Model files: d / r", [found])
    assert "2 files: 1 checkpoint, 1 eval record" in page
    assert page.count('class="file"') == 2


def test_long_listings_are_capped_and_problems_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_SHOWN", 2)
    found = listing("gs://b/m", [f"gs://b/m/ckpt-{n}.index" for n in range(5)])
    page = render_files("t", [found])
    assert page.count('class="file"') == 2 and "and 3 more files" in page
    assert 'href="https://console.cloud.google.com/storage/browser/b/m"' in page
    broken = render_files("t", [listing("gs://b/m", [], "cannot list gs://b/m: Forbidden")])
    assert '<p class="problems">cannot list gs://b/m: Forbidden</p>' in broken
    assert "has no model directory yet" in render_files("t", [])
