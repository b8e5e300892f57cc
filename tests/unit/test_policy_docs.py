"""The policy tables users read are the code's: `tfdist.lifecycle.policy_table()` (what a
role's end means) and `tfdist.supervisor.rules_table()` (which end counts, and when) appear
as they are in the modules' docstrings, the README and RELIABILITY.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdist import lifecycle, supervisor

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"policy": lifecycle.policy_table(), "rules": supervisor.rules_table()}
WHERE = {
    "policy": [("tfdist.lifecycle", lifecycle.__doc__ or "")],
    "rules": [("tfdist.supervisor", supervisor.__doc__ or "")],
}
for _doc in ("README.md", "RELIABILITY.md"):
    for _table in TABLES:
        WHERE[_table].append((_doc, (ROOT / _doc).read_text()))


@pytest.mark.parametrize(
    ("table", "where", "text"),
    [(table, where, text) for table, found in WHERE.items() for where, text in found],
    ids=[f"{table}-{where}" for table, found in WHERE.items() for where, _ in found],
)
def test_the_documented_table_is_the_codes(table: str, where: str, text: str) -> None:
    assert TABLES[table] in text, f"{where} has another {table} table; paste:\n{TABLES[table]}"


def test_the_policy_table_says_what_decide_does() -> None:
    rows = {line.split(" | ")[0].strip("| "): line for line in TABLES["policy"].splitlines()}
    assert (
        "| the job fails now | the job fails now |"
        in rows["exit 1-127 (the program's own failure)"]
    )
    killed = rows["killed by a signal (exit >= 128)"]
    assert "| restarted alone | every role restarted from the last checkpoint |" in killed
    assert "not counted" in rows["preempted, evicted, node shut down"]
