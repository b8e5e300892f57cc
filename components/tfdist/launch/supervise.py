"""`python -m tfdist.launch.supervise`: run one role process and record how it ended.

The local launcher starts each role under this small supervisor, in a new session. The
supervisor outlives whoever launched it (an Airflow setup task exits right after launching),
gives the role a private TMPDIR that it removes when the role ends, writes the role's exit
code to `<role>.exit`, forwards SIGTERM to the role's process group, and, when bound to a
parent (`--parent PID`), stops the role and whatever it started if that parent dies (SIGTERM,
then SIGKILL after `--grace-secs`), so a killed `tfdist run` leaves no orphans.

With `--standby FIFO` it holds the FIFO open and starts its command at once as a standby
(`tfdist.runtime.standby`); a launcher can open the FIFO for writing only while it is held. The
line written there (the role's log) goes on to the standby's stdin and makes it the role,
supervised as above. A standby stopped, or ended, before that line leaves no exit record: it
never was the role.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from types import FrameType

STOP_GRACE_SECS = 10.0
PARENT_POLL_SECS = 1.0
STOPPING = {signal.SIGTERM, signal.SIGINT}


def _exit_code(returncode: int) -> int:
    """Shell convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _write_exit(path: Path, code: int, reason: str) -> None:
    temporary = path.with_suffix(".exit.tmp")
    temporary.write_text(json.dumps({"exit_code": code, "reason": reason, "ended": time.time()}))
    os.replace(temporary, path)


def _parent_gone(parent: int) -> bool:
    """The launcher started us; once it dies we are re-parented (to init or a subreaper).

    Unlike probing its process id, this holds while it is an unreaped zombie and after its id
    has been reused.
    """
    return os.getppid() != parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exit-file", required=True, type=Path)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--grace-secs", type=float, default=STOP_GRACE_SECS)
    parser.add_argument("--standby", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    # The role's TMPDIR, removed however the role ends (a stopped role cannot clean up).
    scratch = tempfile.mkdtemp(prefix="tfdist-role-")
    try:
        env = {**os.environ, "TMPDIR": scratch}
        if args.standby is None:
            code, reason = _run(command, env, args.parent, args.grace_secs)
        else:
            child = _standby(command, env, args.standby, args.parent)
            if child is None:
                return 0
            code, reason = _watch(child, args.parent, args.grace_secs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _write_exit(args.exit_file, code, reason)
    return code


def _run(
    command: list[str], env: dict[str, str], parent: int | None, grace_secs: float
) -> tuple[int, str]:
    """Run the role until it ends; its exit code and why it ended."""
    try:
        child = subprocess.Popen(command, env=env)  # inherits our session, stdout and stderr
    except OSError as error:
        print(f"tfdist: cannot start {command[0]!r}: {error}", file=sys.stderr, flush=True)
        return 127, f"cannot start: {error}"
    return _watch(child, parent, grace_secs)


class _Stopped(Exception):
    """SIGTERM or SIGINT to a standby not yet handed over."""


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def _standby(
    command: list[str], env: dict[str, str], fifo: Path, parent: int | None
) -> subprocess.Popen[bytes] | None:
    """Start `command` as a standby; once the FIFO brings the role's log, pass that line on to
    the standby's stdin and return it. None if it was not needed: stopped, its parent gone, or
    it ended first."""
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    child: subprocess.Popen[bytes] | None = None
    try:
        # Opened first, read-write (an idle read then blocks instead of seeing EOF): from now
        # on a launcher can hand the role over, even before the standby is ready.
        reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE)
            log = _handed_over(child, reader, parent)
        finally:
            os.close(reader)
        if log is None:
            _unused(child)
            return None
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)  # _watch forwards them from here on
        assert child.stdin is not None
        with suppress(BrokenPipeError):  # it ended meanwhile: _watch reads its exit code
            child.stdin.write(log)
            child.stdin.close()
        return child
    except (_Stopped, OSError):
        _unused(child)
        return None


def _handed_over(child: subprocess.Popen[bytes], fifo: int, parent: int | None) -> bytes | None:
    """The line the FIFO brings (written at once: one read gets it); None once the standby has
    ended or the parent is gone."""
    while True:
        readable, _, _ = select.select([fifo], [], [], PARENT_POLL_SECS)
        if readable:
            return os.read(fifo, 4096)
        if child.poll() is not None or (parent is not None and _parent_gone(parent)):
            return None


def _unused(child: subprocess.Popen[bytes] | None) -> None:
    """Stop a standby that will not be the role."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if child is not None:
        child.kill()
        child.wait()


def _watch(
    child: subprocess.Popen[bytes], parent: int | None, grace_secs: float
) -> tuple[int, str]:
    """Supervise the role's process until it ends; its exit code and why it ended."""
    reason = "exited"

    def stop_child(signum: int, _frame: FrameType | None) -> None:
        nonlocal reason
        if reason == "exited":
            reason = "stopped"
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop_child)
    signal.signal(signal.SIGINT, stop_child)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)  # held while a standby took over
    while True:
        try:
            returncode = child.wait(timeout=PARENT_POLL_SECS)
            break
        except subprocess.TimeoutExpired:
            if parent is not None and _parent_gone(parent):
                reason = "launcher gone"
                with suppress(ProcessLookupError):  # the role and whatever it started
                    os.killpg(os.getpgrp(), signal.SIGTERM)
                try:
                    returncode = child.wait(timeout=grace_secs)
                except subprocess.TimeoutExpired:
                    child.kill()
                    returncode = child.wait()
                break
    if reason == "exited" and parent is not None and _parent_gone(parent):
        # It ended after its launcher died, between two looks: most likely because a peer was
        # stopped for that reason. Whichever supervisor looks first, the cause is the same.
        reason = "launcher gone"
    return _exit_code(returncode), reason


if __name__ == "__main__":
    sys.exit(main())
