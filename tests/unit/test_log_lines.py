"""Log hygiene by value: TensorFlow's start-up lines, the log-level switch, relayed role lines."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tfdist import tflog
from tfdist.rolelog import RoleFormatter, relay, relayed, relayed_line

PREAMBLE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
)
ONEDNN = (
    "I0000 00:00:1796006689.923488    8284 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.\n"
)
GRPC_ERROR = "E0000 00:00:1796006771.359950   11651 grpc_server_lib.cc:467] Bind failed\n"


@pytest.mark.parametrize(
    ("line", "level", "noise"),
    [
        pytest.param(PREAMBLE, 2, True, id="absl-preamble"),
        pytest.param(ONEDNN, 2, True, id="info-line"),
        pytest.param(ONEDNN, 1, True, id="info-line-at-warning"),
        pytest.param(GRPC_ERROR, 2, False, id="error-line-kept"),
        pytest.param(GRPC_ERROR, 3, True, id="error-line-at-fatal"),
        pytest.param(PREAMBLE, 0, False, id="everything-at-info"),
        pytest.param(ONEDNN, 0, False, id="info-line-at-info"),
        pytest.param("Traceback (most recent call last):\n", 2, False, id="python-output"),
        pytest.param("I0000 is not an absl line\n", 2, False, id="look-alike"),
    ],
)
def test_startup_noise_is_what_absl_logs_below_the_level(
    line: str, level: int, noise: bool
) -> None:
    assert tflog.is_startup_noise(line, level) is noise


def test_the_switch_sets_tensorflow_levels() -> None:
    environ = {"TFDIST_TF_LOG_LEVEL": "INFO", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert tflog.configure(environ) == 0
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert logging.getLogger("tensorflow").level == logging.INFO

    unset: dict[str, str] = {}
    assert tflog.configure(unset) == 2
    assert unset == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert logging.getLogger("tensorflow").level == logging.ERROR

    own = {"TF_CPP_MIN_LOG_LEVEL": "1"}  # set by the user without the switch: kept
    tflog.configure(own)
    assert own == {"TF_CPP_MIN_LOG_LEVEL": "1"}


def test_a_misspelt_level_is_named_with_the_choices() -> None:
    with pytest.raises(tflog.TFLogLevelError) as error:
        tflog.min_level({"TFDIST_TF_LOG_LEVEL": "verbose"})
    assert str(error.value) == (
        "TFDIST_TF_LOG_LEVEL='verbose' is not a level; use one of info, warning, error, fatal"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "2026-11-30T02:45:03.255Z chief-0 INFO tfdist.train: step 100/200 loss 0.2174",
            "tfdist.train: step 100/200 loss 0.2174",
            id="runtime-line",
        ),
        pytest.param(
            "2026-11-30 02:45:03,255 chief-0 INFO tfdist.train: step 100/200 loss 0.2174",
            "tfdist.train: step 100/200 loss 0.2174",
            id="local-time-line",
        ),
        pytest.param(
            "2026-11-30 02:45:03,255 worker-1 INFO tfdist.serve: serving",
            "2026-11-30 02:45:03,255 worker-1 INFO tfdist.serve: serving",
            id="another-role",
        ),
        pytest.param("started", "started", id="plain-output"),
        pytest.param(
            "----- tfdist: starting chief-0 again -----",
            "----- tfdist: starting chief-0 again -----",
            id="launcher-line",
        ),
    ],
)
def test_a_relayed_line_loses_only_its_own_time_role_and_level(line: str, expected: str) -> None:
    assert relayed("chief-0", line) == expected


class Recorded:
    """A logger with structlog's `log(level, event, *args, **kw)`, keeping what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, dict[str, Any]]] = []

    def log(self, level: int, event: str, *args: object, **kw: Any) -> None:
        self.calls.append((level, event % args, kw))


def test_a_relayed_line_keeps_the_roles_level_and_time() -> None:
    """A line logged at 02:45:03.255 by the role is stamped 02:45:03.255 in Airflow's log, not
    when it was read; lines the role did not log (a traceback) are INFO at the reader's time."""
    log = Recorded()
    relay(log, "worker-1", "2026-11-30T02:45:03.255Z worker-1 WARNING tfdist.serve: slow")
    relay(log, "worker-1", "2026-11-30T02:45:04.001Z worker-1 INFO tfdist.serve: serving")
    relay(log, "worker-1", "Traceback (most recent call last):")
    relay(log, "worker-1", "2026-11-30 02:45:05,000 worker-1 ERROR tfdist.serve: old style")
    assert log.calls == [
        (
            logging.WARNING,
            "[worker-1] tfdist.serve: slow",
            {"timestamp": "2026-11-30T02:45:03.255000Z"},
        ),
        (
            logging.INFO,
            "[worker-1] tfdist.serve: serving",
            {"timestamp": "2026-11-30T02:45:04.001000Z"},
        ),
        (logging.INFO, "[worker-1] Traceback (most recent call last):", {}),
        (logging.ERROR, "[worker-1] tfdist.serve: old style", {}),  # no zone: no time
    ]


def test_role_lines_are_stamped_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        record = logging.LogRecord("tfdist.train", logging.INFO, "f", 1, "step %d", (5,), None)
        record.created, record.msecs = 1796544303.255, 255.0
        line = RoleFormatter("chief-0").format(record)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert line == "2026-12-06T08:05:03.255Z chief-0 INFO tfdist.train: step 5"
    assert relayed_line("chief-0", line).time == datetime(2026, 12, 6, 8, 5, 3, 255000, tzinfo=UTC)
