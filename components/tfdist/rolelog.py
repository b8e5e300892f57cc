"""The lines of a role's log: written by the runtime, relayed into other logs.

A role's own log file stamps every line (`<time> <role> <LEVEL> <logger>: <message>`), since
it is read on its own. A log that stamps each line itself, as Airflow's task log does, relays
a line without the role's time and name (`relayed`), so each line carries one time.
"""

from __future__ import annotations

import re


def line_format(role: str) -> str:
    """The `logging` format of role `role`'s own lines."""
    return f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<role>\S+) ")


def relayed(role: str, line: str) -> str:
    """`line` of `role`'s log without its time and role name; any other line as it is."""
    match = _STAMP.match(line)
    if match is None or match["role"] != role:
        return line
    return line[match.end() :]
