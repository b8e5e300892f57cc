"""The lines of a role's log: written by the runtime, relayed into other logs.

A role's own log file stamps every line (`<time> <role> <LEVEL> <logger>: <message>`, the time
in UTC, ISO 8601), since it is read on its own. A log that stamps and levels each line itself,
as Airflow's task log does, relays a line at the role's own level and time, without them in its
text (`relay`), so each line carries one time (the event's) and one level.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple


def line_format(role: str) -> str:
    """The `logging` format of role `role`'s own lines."""
    return f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"


class RoleFormatter(logging.Formatter):
    """`line_format(role)` with the time in UTC: `2026-11-30T02:45:03.255Z`."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, role: str) -> None:
        super().__init__(line_format(role))

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)


def setup(role: str, stream: Any, level: int = logging.WARNING) -> None:
    """Log every line of this process as role `role`'s, to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RoleFormatter(role))
    logging.basicConfig(level=level, handlers=[handler], force=True)


_STAMP = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[.,]\d{3})(?P<utc>Z?) (?P<role>\S+) "
    r"(?:(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) )?"
)


class Relayed(NamedTuple):
    """A role's line as another log shows it: its level, its time (None: unknown, for lines
    the role did not log itself, such as a traceback) and its text without either."""

    level: int
    time: datetime | None
    text: str


def relayed_line(role: str, line: str) -> Relayed:
    """`line` of `role`'s log split into level, time and text; any other line at INFO as it is."""
    match = _STAMP.match(line)
    if match is None or match["role"] != role:
        return Relayed(logging.INFO, None, line)
    moment = None
    if match["utc"]:  # a time without its zone cannot be placed; older lines had none
        stamp = match["time"].replace(" ", "T").replace(",", ".")
        moment = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    level = logging.getLevelNamesMapping()[match["level"]] if match["level"] else logging.INFO
    return Relayed(level, moment, line[match.end() :])


def relayed(role: str, line: str) -> str:
    """`line` of `role`'s log without its time, role name and level; any other line as it is."""
    return relayed_line(role, line).text


def relay(log: Any, role: str, line: str) -> None:
    """Log `line` of `role`'s log to `log` (a structlog logger, as Airflow's tasks and triggers
    have) at the role's level, stamped with the role's own time where its line has one."""
    found = relayed_line(role, line)
    stamp = {}
    if found.time is not None:
        stamp["timestamp"] = found.time.isoformat().replace("+00:00", "Z")
    log.log(found.level, "[%s] %s", role, found.text, **stamp)
