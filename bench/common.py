"""Shared pieces of the benchmarks: statistics, result rows, role-log parsing, the example job."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent
EXAMPLE_SPEC = REPO / "components" / "tfdist" / "examples" / "digits.yaml"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

T = TypeVar("T")


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, fmt: str = "{:.3f}", unit: str = "") -> str:
        mid, low, high = (fmt.format(v) for v in (self.median, self.low, self.high))
        return f"{mid}{unit} [{low}-{high}] n={self.count}"


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a ratio (or `None`) against its target."""

    item: str
    figure: str
    ratio: Stats | None
    target: str
    passed: bool | None  # None: no target, or not run
    detail: str = ""


@dataclass
class Timed:
    """Wall times and payloads of interleaved runs, by way."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, list[Any]] = field(default_factory=dict)


def interleave(ways: dict[str, Callable[[int], T]], runs: int, *, log: bool = True) -> Timed:
    """Run every way `runs` times, alternating the order each round (A B, B A, ...)."""
    timed = Timed({name: [] for name in ways}, {name: [] for name in ways})
    names = list(ways)
    for index in range(runs):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            started = time.perf_counter()
            result = ways[name](index)
            elapsed = time.perf_counter() - started
            timed.seconds[name].append(elapsed)
            timed.results[name].append(result)
            if log:
                print(f"  run {index + 1}/{runs} {name}: {elapsed:.2f} s", flush=True)
    return timed


def paired_ratios(candidate: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Candidate / baseline of each round: neighbours in time share the machine's load."""
    return [c / b for c, b in zip(candidate, baseline, strict=True)]


def print_table(rows: Sequence[Row], out: Any = None) -> None:
    """The summary: item, figure, ratio (median [min-max]), target, verdict, detail."""
    out = out or sys.stdout
    header = ("#", "figure", "ratio: median [min-max] n", "target", "result")
    lines = [
        (
            row.item,
            row.figure,
            row.ratio.show("{:.3f}") if row.ratio else "-",
            row.target,
            {True: "ok", False: "MISSED", None: "-"}[row.passed],
        )
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), file=out)
    print("-+-".join("-" * w for w in widths), file=out)
    for line in lines:
        print(" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)), file=out)
    details = [row for row in rows if row.detail]
    if details:
        print(file=out)
        for row in details:
            print(f"{row.item} {row.figure}: {row.detail}", file=out)


# -- role logs --------------------------------------------------------------------------------

# `<UTC time> <role> <LEVEL> <logger>: <message>`, as the runtime logs (`tfdist.rolelog`).
LOG_LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (?P<role>\S+) (?P<level>[A-Z]+) "
    r"(?P<logger>[\w.]+): (?P<message>.*)"
)
# TensorFlow's C++ library logs once as it loads (absl: `I0000 00:00:<epoch>.<us> ...`).
TF_LOADED = re.compile(r"^I0000 00:00:(?P<epoch>\d+\.\d+) .*")
STEP = re.compile(r"^step (?P<step>\d+)(?:/\d+)? loss")


@dataclass(frozen=True)
class LogLine:
    time: float  # seconds since the epoch
    role: str
    logger: str
    message: str


def parse_log(text: str) -> list[LogLine]:
    """The runtime's own lines (and TensorFlow's first C++ line as `tf-loaded`) of one log."""
    lines = []
    for raw in text.splitlines():
        raw = raw.split("] ", 1)[1] if raw.startswith("[") and "] " in raw else raw
        match = LOG_LINE.search(raw)
        if match:
            stamp = datetime.fromisoformat(match["time"]).replace(tzinfo=UTC).timestamp()
            lines.append(LogLine(stamp, match["role"], match["logger"], match["message"]))
            continue
        loaded = TF_LOADED.match(raw)
        if loaded:
            lines.append(LogLine(float(loaded["epoch"]), "", "tf-loaded", raw))
    return lines


def first(lines: Sequence[LogLine], prefix: str) -> LogLine | None:
    return next((line for line in lines if line.message.startswith(prefix)), None)


def steps(lines: Sequence[LogLine]) -> list[tuple[float, int]]:
    """(time, step) of every progress line."""
    found = []
    for line in lines:
        match = STEP.match(line.message)
        if match:
            found.append((line.time, int(match["step"])))
    return found


def steady_rate(progress: Sequence[tuple[float, int]], skip_steps: int) -> float:
    """Steps/s between the first progress line at or after `skip_steps` and the last one."""
    window = [(t, s) for t, s in progress if s >= skip_steps]
    if len(window) < 2 or window[-1][0] <= window[0][0]:
        raise ValueError(f"too few progress lines after step {skip_steps}: {progress}")
    (t0, s0), (t1, s1) = window[0], window[-1]
    return (s1 - s0) / (t1 - t0)


# -- the example job --------------------------------------------------------------------------


def example_spec(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example job (`digits.yaml`) as a plain dict, fields replaced by dotted path."""
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE_SPEC.read_text())
    for path, value in (changes or {}).items():
        target = spec
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return spec


def prepare_data(data_dir: Path, shards: int = 4) -> Path:
    """Write the digits TFRecords once, in `shards` train files (the example writes 4).

    Each training process reads its own files, so jobs with more than 4 training processes
    need more. Runs in a subprocess: this process stays free of TensorFlow.
    """
    if not (data_dir / "_PREPARED").exists():
        code = (
            "import sys; from tfdist.examples import digits; "
            "digits.TRAIN_SHARDS = int(sys.argv[2]); digits.prepare_data(sys.argv[1])"
        )
        subprocess.run(
            [PYTHON, "-c", code, str(data_dir), str(shards)],
            check=True,
            env={**os.environ, **QUIET_ENV},
            capture_output=True,
        )
    return data_dir


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@contextmanager
def workspace(name: str) -> Iterator[Path]:
    """A fresh directory under `var/bench/`, removed afterwards unless `BENCH_KEEP=1`."""
    root = REPO / "var" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
