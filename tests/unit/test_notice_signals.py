"""How a role's SIGTERM handler ends it: real signals, in a fresh interpreter of their own."""

from __future__ import annotations

import subprocess
import sys

# A role with nothing to save gets SIGTERM twice, the second while it handles the first.
TWICE = """
import os, signal, time
from tfdist.runtime import notice
notice.exit_at_once()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not interrupted")
except notice.Preempted:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("ending preempted; notice recorded:", notice.received())
"""


def test_a_second_sigterm_only_finds_a_role_with_nothing_to_save_ending() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", TWICE], capture_output=True, text=True, timeout=30, check=False
    )
    assert (ran.returncode, ran.stderr) == (0, "")
    assert ran.stdout == "ending preempted; notice recorded: True\n"
