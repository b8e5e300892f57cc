"""Log hygiene by value: TensorFlow's start-up lines, the log-level switch, relayed role lines."""

from __future__ import annotations

import logging

import pytest

from tfdist import tflog
from tfdist.rolelog import relayed

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
            "2026-11-30 02:45:03,255 chief-0 INFO tfdist.train: step 100/200 loss 0.2174",
            "INFO tfdist.train: step 100/200 loss 0.2174",
            id="runtime-line",
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
def test_a_relayed_line_loses_only_its_own_time_and_role(line: str, expected: str) -> None:
    assert relayed("chief-0", line) == expected
