"""The planning modules import without TensorFlow or cloud clients (operators import them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "kubernetes", "google")
LIGHT_MODULES = ("tfdist", "tfdist.spec", "tfdist.plan", "tfdist.tf_config", "tfdist.records")

_PROBE = f"""
import json, sys
import {", ".join(LIGHT_MODULES)}
heavy = {HEAVY!r}
loaded = sorted(
    name for name in sys.modules if any(name == h or name.startswith(h + ".") for h in heavy)
)
imported = [name for name in {LIGHT_MODULES!r} if name in sys.modules]
print(json.dumps({{"loaded": loaded, "imported": imported}}))
"""


def test_light_modules_load_no_heavy_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["imported"] == list(LIGHT_MODULES)
    assert report["loaded"] == []


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("import tfdist", id="package"),
        pytest.param(f"import {', '.join(LIGHT_MODULES)}", id="light-modules"),
    ],
)
def test_importtime_shows_no_tensorflow(statement: str) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "import time:" in result.stderr  # the report is there to check
    assert "tensorflow" not in result.stderr
