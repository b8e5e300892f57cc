"""TensorFlow's start-up lines stay out of stderr unless `TFDIST_TF_LOG_LEVEL=info` asks for
them: a real `import tensorflow` in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

IMPORT = "from tfdist import tflog; tflog.quiet_import(); print('imported')"
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"


def run(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "TFDIST_TF"))}
    return subprocess.run(
        [sys.executable, "-c", IMPORT],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(240)
def test_tensorflow_imports_without_start_up_lines_unless_asked() -> None:
    quiet = run()
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("imported\n", "")

    shown = run(TFDIST_TF_LOG_LEVEL="info")
    assert shown.returncode == 0, shown.stderr
    # Which start-up lines TensorFlow prints depends on the CPU (oneDNN's line, a second
    # preamble, the instructions it was not built for); each machine prints the preamble and
    # info lines from TensorFlow's C++ core (`I0000 ... file.cc:N] ...`).
    assert PREAMBLE in shown.stderr
    assert re.search(r"^I\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\] ", shown.stderr, re.M), shown.stderr
