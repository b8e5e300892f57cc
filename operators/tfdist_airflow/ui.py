"""`python -m tfdist_airflow.ui [COMMAND...]`: `airflow standalone` (or COMMAND) that Ctrl-C
stops, all of it, within seconds.

`airflow standalone` alone waits on its components for over a minute after Ctrl-C and can leave
the scheduler and triggerer running, holding their ports and the SQLite database; role
processes of a local run are in sessions of their own and outlive it. So this process becomes
the child subreaper of everything it starts (Linux `PR_SET_CHILD_SUBREAPER`: processes orphaned
below it, such as role processes whose launch task ended, become its children), runs the
command in a session of its own, and on SIGINT or SIGTERM (or when the command ends) sends
SIGTERM to every process below it, then SIGKILL to any left after `GRACE_SECS`.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import psutil

GRACE_SECS = 5.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphans below this process its children (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def stop_all(me: psutil.Process, grace: float = GRACE_SECS) -> None:
    """SIGTERM every process below `me`, SIGKILL those alive `grace` seconds later; again for
    any orphan reparented to `me` meanwhile, until none is left."""
    deadline = time.monotonic() + grace
    signalled: set[int] = set()
    while below := me.children(recursive=True):
        for process in below:
            try:
                if process.pid not in signalled:
                    process.terminate()
                    signalled.add(process.pid)
                elif time.monotonic() >= deadline:
                    process.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(below, timeout=0.2)  # reaps those that are our own children


def main(argv: list[str] | None = None) -> int:
    command = (argv if argv is not None else sys.argv[1:]) or ["airflow", "standalone"]
    become_subreaper()
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    child = subprocess.Popen(command, start_new_session=True)  # Ctrl-C reaches this process only
    while not stop.is_set() and child.poll() is None:
        stop.wait(0.5)
    if stop.is_set():
        print("\nstopping every process of the UI ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    stop_all(psutil.Process())
    child.wait()
    if stop.is_set():
        print(f"stopped in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 130
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
