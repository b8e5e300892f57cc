"""Reading a pod's log a poll at a time (`tfdist.kubernetes.logs`), by value, on reads shaped as
the API sends them with `sinceTime` and `timestamps=true` (RFC 3339, nine fraction digits, a
space, the line); and through the shipped fake API, which filters and stamps the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tfdist.kubernetes.logs import LogCursor, nanoseconds, new_lines, rfc3339
from tfdist.testing.kube_api import FakeKubeApi

T = "2027-01-15T08:00:03"


def test_times_as_the_kubelet_writes_them() -> None:
    base = int(datetime(2027, 1, 15, 8, 0, 3, tzinfo=UTC).timestamp())
    assert nanoseconds(f"{T}.123456789Z") == base * 10**9 + 123_456_789
    assert nanoseconds(f"{T}.5Z") == nanoseconds(f"{T}.500000000Z")
    assert nanoseconds(f"{T}Z") == nanoseconds(f"{T}.000000000Z")
    assert nanoseconds(f"{T}.000000001+01:00") == nanoseconds("2027-01-15T07:00:03.000000001Z")
    assert nanoseconds("no time here") is None
    assert rfc3339(base + 0.25) == f"{T}.250000000Z"


def test_the_cursor_is_one_int_and_asks_from_the_second_of_its_last_line() -> None:
    cursor = LogCursor(3, 2, nanoseconds(f"{T}.999999999Z") or 0, 4)
    assert LogCursor.decode(cursor.encode()) == cursor
    assert cursor.since == f"{T}Z"  # sinceTime is whole seconds: that second again
    assert LogCursor(0, 0).since is None
    assert LogCursor.decode(0) == LogCursor(0, 0, 0, 0)


def stamped(*lines: tuple[str, str]) -> str:
    return "".join(f"{T}.{fraction}Z {text}\n" for fraction, text in lines)


def test_each_line_once_across_reads_that_overlap_at_the_boundary() -> None:
    """The second read asks from the second of the last line, so it sends that line (and any
    other of the same nanosecond) again: they are dropped, the new ones passed on."""
    first = stamped(("100000000", "step 1"), ("200000000", "step 2"), ("200000000", "step 2b"))
    text, cursor = new_lines(first, LogCursor(0, 0))
    assert text == "step 1\nstep 2\nstep 2b\n"
    assert (cursor.stamp % 10**9, cursor.seen) == (200_000_000, 2)
    second = stamped(
        ("100000000", "step 1"),
        ("200000000", "step 2"),
        ("200000000", "step 2b"),
        ("200000000", "step 2c"),  # written later in the same nanosecond
        ("300000000", "step 3"),
    )
    text, cursor = new_lines(second, cursor)
    assert text == "step 2c\nstep 3\n"
    assert new_lines(second, cursor) == ("", cursor)


def test_a_line_without_its_newline_waits_unless_the_pod_ended() -> None:
    data = stamped(("1", "step 1")) + f"{T}.2Z step 2 half"
    text, cursor = new_lines(data, LogCursor(0, 0))
    assert text == "step 1\n"
    assert new_lines(data + " done\n", cursor)[0] == "step 2 half done\n"
    assert new_lines(data, cursor, whole=True)[0] == "step 2 half"


def test_a_line_with_no_timestamp_is_passed_on_as_it_is() -> None:
    text, cursor = new_lines("unexpected\n", LogCursor(0, 0))
    assert (text, cursor) == ("unexpected\n", LogCursor(0, 0))


@pytest.mark.parametrize("gap", [0.0, 0.4, 1.0, 7.5])
def test_through_the_fake_api_no_line_is_lost_or_repeated(gap: float) -> None:
    """Polls `gap` seconds apart while the container writes ten lines a second, some in the
    same instant; every line arrives once and a poll sends only what is new (and that second)."""
    now = [1_800_000_000.0]
    api = FakeKubeApi(clock=lambda: now[0])
    api.create_pod("ml", {"metadata": {"name": "p"}, "spec": {"containers": [{"image": "i"}]}})
    cursor, seen, written = LogCursor(0, 0), [], []
    for step in range(60):
        lines = [f"step {step}\n"] + ([f"step {step} again\n"] if step % 7 == 0 else [])
        api.write_log("p", "".join(lines))
        written.extend(lines)
        now[0] += 0.1
        if step % max(int(gap * 10), 1) == 0:
            before = api.log_bytes
            data = api.read_pod_log("ml", "p", since=cursor.since, timestamps=True)
            text, cursor = new_lines(data, cursor)
            seen.append(text)
            assert api.log_bytes - before < 60 * (gap + 1.2) * 10  # about this second on
    data = api.read_pod_log("ml", "p", since=cursor.since, timestamps=True)
    seen.append(new_lines(data, cursor, whole=True)[0])
    assert "".join(seen) == "".join(written)
