"""TensorFlow's own logging, quiet unless asked for: `TFDIST_TF_LOG_LEVEL`.

TensorFlow's C++ library logs while it loads, before it reads `TF_CPP_MIN_LOG_LEVEL`: each of
its two shared libraries writes absl's "All log messages before absl::InitializeLog() is
called are written to STDERR" and an `I0000 ...` line ("oneDNN custom operations are on")
straight to file descriptor 2. In an Airflow task that is stderr, which Airflow shows as
ERROR. `quiet_import()` imports TensorFlow with those lines held back: they are dropped, and
any other output of the import is written to stderr after it.

`TFDIST_TF_LOG_LEVEL` (`info`, `warning`, `error` (default) or `fatal`) sets the least severe
TensorFlow message shown, from C++ (`TF_CPP_MIN_LOG_LEVEL`), from its load, and from its
Python logger; `info` shows everything, the start-up lines included. No TensorFlow import here.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from types import ModuleType

SWITCH = "TFDIST_TF_LOG_LEVEL"
LEVELS = {"info": 0, "warning": 1, "error": 2, "fatal": 3}
DEFAULT = "error"

_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# absl's prefix: severity, MMDD, time (00:00:<epoch> before absl is set up), thread, file:line]
_ABSL_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


class TFLogLevelError(ValueError):
    """`TFDIST_TF_LOG_LEVEL` names no level."""


def min_level(environ: MutableMapping[str, str] = os.environ) -> int:
    """The least severe TensorFlow message shown: 0 info, 1 warning, 2 error, 3 fatal."""
    value = environ.get(SWITCH, DEFAULT).strip().lower()
    if value not in LEVELS:
        raise TFLogLevelError(
            f"{SWITCH}={environ[SWITCH]!r} is not a level; use one of {', '.join(LEVELS)}"
        )
    return LEVELS[value]


def configure(environ: MutableMapping[str, str] = os.environ) -> int:
    """Set `TF_CPP_MIN_LOG_LEVEL` (from the switch when set, else 2 unless already set) and
    TensorFlow's Python logger level; returns the level."""
    level = min_level(environ)
    if SWITCH in environ:
        environ["TF_CPP_MIN_LOG_LEVEL"] = str(level)
    else:
        environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    python_levels = [logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    logging.getLogger("tensorflow").setLevel(python_levels[level])
    return level


def is_startup_noise(line: str, level: int) -> bool:
    """A line TensorFlow's C++ library logs as it loads, below `level`."""
    if level == 0:
        return False
    if line.startswith(_ABSL_PREAMBLE):
        return True
    match = _ABSL_LINE.match(line)
    return match is not None and _SEVERITY[match["severity"]] < level


@contextmanager
def startup_filtered(level: int) -> Iterator[None]:
    """While inside, file descriptor 2 goes to a temporary file; at the end, what is not
    start-up noise is written to stderr."""
    if level == 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            kept = [line for line in text.splitlines(True) if not is_startup_noise(line, level)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_import() -> ModuleType:
    """`import tensorflow`, configured by `TFDIST_TF_LOG_LEVEL`, without its start-up lines."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    level = configure()
    with startup_filtered(level):
        import tensorflow  # noqa: F401

    return sys.modules["tensorflow"]
