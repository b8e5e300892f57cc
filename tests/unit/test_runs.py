"""Per-run naming of the Airflow binding, and which peers' failure ends a role, by value.

(Which restart a role gets is `tfdist.lifecycle`'s table: tests/unit/test_lifecycle.py.)
"""

from __future__ import annotations

import pytest

from tfdist_airflow.runs import fatal_peers, run_model_dir, run_name, run_scope


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        pytest.param(
            "manual__2026-11-28T00:18:36.710239+00:00",
            "manual__2026-11-28T00-18-36.710239-00-00",
            id="manual",
        ),
        pytest.param(
            "scheduled__2026-11-27T00:00:00+00:00",
            "scheduled__2026-11-27T00-00-00-00-00",
            id="scheduled",
        ),
        pytest.param("../../etc/passwd", "etc-passwd", id="no-escape"),
        pytest.param("a b/c", "a-b-c", id="spaces-and-slashes"),
    ],
)
def test_run_name_is_path_safe(run_id: str, expected: str) -> None:
    assert run_name(run_id) == expected


def test_run_name_refuses_an_id_with_nothing_usable() -> None:
    with pytest.raises(ValueError, match="no usable characters"):
        run_name("/../")


def test_model_dir_is_per_dag_and_run() -> None:
    assert run_model_dir("gs://b/models/", "nightly", "manual__x:1") == (
        "gs://b/models/nightly/manual__x-1"
    )
    assert run_model_dir("/m", "d", "r1") != run_model_dir("/m", "d", "r2")
    assert run_scope("d", "r:1", "group.sub") == "d/r-1/group.sub"


def test_fatal_peers() -> None:
    roles = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]
    assert fatal_peers("evaluator-0", roles, True) == ["chief-0", "ps-0"]
    assert fatal_peers("ps-0", roles, True) == ["chief-0"]
    all_reduce = ["chief-0", "worker-0", "evaluator-0"]
    assert fatal_peers("evaluator-0", all_reduce, False) == ["chief-0", "worker-0"]
    assert fatal_peers("worker-0", all_reduce, False) == ["chief-0"]
