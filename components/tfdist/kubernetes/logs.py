"""Reading a pod's log a poll at a time: only the lines written since the last poll.

The API has no byte offset into a log, but it can send the lines from a time on (`sinceTime`,
whole seconds) each after its own timestamp (`timestamps=true`, RFC 3339 with nanoseconds). A
cursor keeps the timestamp of the last line passed on and how many lines carried exactly that
timestamp; the next read asks from that second and drops what came before the cursor, so each
line is passed on once and a poll costs the bytes written since the last one, however long the
log has grown. A role's pod never restarts its container (`restartPolicy: Never`): a new run is
a new pod, which the cursor's `attempt` and `ordinal` follow.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import NamedTuple

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ")
_SECOND = 10**9


class LogCursor(NamedTuple):
    """Where a role's log was read up to: which pod (its JobSet restart attempt and its place
    among the replica's pods in that attempt), the timestamp of the last line passed on (ns
    since the epoch, 0: none yet) and how many lines had exactly that timestamp. One int, so
    that it fits the `Backend.read_log` offset; opaque to everyone else."""

    attempt: int
    ordinal: int
    stamp: int = 0
    seen: int = 0

    @classmethod
    def decode(cls, offset: int) -> LogCursor:
        rest, seen = divmod(offset, 1 << 20)
        pod, stamp = divmod(rest, 1 << 64)
        attempt, ordinal = divmod(pod, 1 << 12)
        return cls(attempt, ordinal, stamp, seen)

    def encode(self) -> int:
        pod = (self.attempt << 12) + self.ordinal
        return (((pod << 64) + self.stamp) << 20) + min(self.seen, (1 << 20) - 1)

    @property
    def since(self) -> str | None:
        """The `sinceTime` to ask for: the second of the last line passed on."""
        if not self.stamp:
            return None
        second = datetime.fromtimestamp(self.stamp // _SECOND, UTC)
        return second.isoformat().replace("+00:00", "Z")


def nanoseconds(stamp: str) -> int | None:
    """An RFC 3339 time (as the kubelet writes it, with up to nine fraction digits) in ns since
    the epoch; None if `stamp` does not start with one."""
    found = _STAMP.match(stamp + " ")
    if not found:
        return None
    whole, fraction, zone = found.groups()
    when = datetime.fromisoformat(f"{whole}{'+00:00' if zone == 'Z' else zone}")
    return int(when.timestamp()) * _SECOND + int((fraction or "0").ljust(9, "0"))


def new_lines(data: str, cursor: LogCursor, whole: bool = False) -> tuple[str, LogCursor]:
    """The lines of `data` (a timestamped read from `cursor.since` on) after the cursor, without
    their timestamps, and the cursor after them. A last line without its newline waits for the
    next read unless `whole` (the pod ended: nothing more will come)."""
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n") and not whole:
        lines.pop()
    out: list[str] = []
    stamp, seen = cursor.stamp, cursor.seen
    skip = cursor.seen  # lines at exactly `cursor.stamp` passed on before
    for line in lines:
        found = _STAMP.match(line)
        at = nanoseconds(line) if found else None
        if found is None or at is None:
            out.append(line)
            continue
        if at < cursor.stamp:
            continue
        if at == cursor.stamp and skip:
            skip -= 1
            continue
        out.append(line[found.end() :])
        stamp, seen = (at, seen + 1) if at == stamp else (at, 1)
    return "".join(out), cursor._replace(stamp=stamp, seen=seen)


def to_nanoseconds(seconds: float) -> int:
    """Seconds since the epoch in ns, without the rounding error of `seconds * 1e9`."""
    whole = int(seconds)
    return whole * _SECOND + round((seconds - whole) * _SECOND)


def rfc3339(seconds: float) -> str:
    """A time as the kubelet stamps a log line (RFC 3339, nanoseconds, UTC)."""
    ns = to_nanoseconds(seconds)
    whole = datetime.fromtimestamp(ns // _SECOND, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ns % _SECOND:09d}Z"
