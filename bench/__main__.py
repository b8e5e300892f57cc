"""`python -m bench` (`make bench`): every measurement, then one table of ratios and targets.

Each item is also a module of its own (`python -m bench.parse_cost`, ...). The whole run is
sized to finish in well under 15 minutes on 2 cores (item 10, spot capacity, adds about 12);
`--only 1 6` runs some items alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    airflow_overhead,
    evaluator_lag,
    launch_latency,
    orchestration,
    parse_cost,
    plan_scale,
    spot,
    throughput,
    watch_requests,
)
from bench.common import REPO, Row, Stats, prepare_data, print_table, workspace

DEPLOY_COPY = REPO / "bench" / "deploy_copy.py"
MWMS = ["--processes", "2", "--steps", "1200", "--log-every", "100", "--skip", "200"]
GPU_ROW = Row(
    "8",
    "GPU: runtime / bare steps/s, same card",
    None,
    ">= 0.97",
    None,
    "not run: no GPU lent; bench/gpu.sh is the prepared script",
)


def machine() -> str:
    """nproc, CPU model, RAM and load: where the numbers come from."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = found[1] if found else model
    memory = "?"
    with contextlib.suppress(OSError):
        found = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        memory = f"{int(found[1]) / 2**20:.1f} GiB" if found else memory
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {memory} RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average {load}"
    )


def deploy_copy_rows() -> list[Row]:
    """Item 7 through `bench.deploy_copy.main`, its table parsed from what it prints."""
    if not DEPLOY_COPY.exists():
        return [Row("7", "deploy copy", None, "report", None, "see bench/deploy_copy.py")]
    from bench import deploy_copy

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        deploy_copy.main([])
    text = out.getvalue()
    print(text, end="")
    times = {
        match[1].strip(): Stats(float(match[2]), float(match[3]), float(match[4]), 0)
        for match in re.finditer(
            r"^(.+?)\s+median\s+([\d.]+) s\s+min\s+([\d.]+) s\s+max\s+([\d.]+) s", text, re.M
        )
    }
    parallel = next(stats for label, stats in times.items() if "threads)" in label)
    naive = times["download+upload"]
    runs = re.search(r"(\d+) runs each", text)
    ratio = Stats(
        naive.median / parallel.median,
        naive.low / parallel.high,
        naive.high / parallel.low,
        int(runs[1]) if runs else 0,
    )
    return [
        Row(
            "7",
            "deploy copy: download+upload / tfdist deploy",
            ratio,
            "> 1 (report)",
            ratio.median > 1,
            text.splitlines()[0]
            + "; "
            + "; ".join(f"{k} {v.median:.3f} s" for k, v in times.items()),
        )
    ]


def run_all(only: set[str], root: Path) -> list[Row]:
    rows: list[Row] = []
    jobs: list[orchestration.JobRun] = []

    def item_2() -> list[Row]:
        found, done = orchestration.measure(root / "orchestration", runs=5, max_steps=400)
        jobs.extend(done)
        return found

    def item_5() -> list[Row]:
        if not jobs:  # item 2 was left out: run the job twice for the lag alone
            (root / "lag").mkdir()
            data_dir = prepare_data(root / "lag" / "data")
            jobs.extend(orchestration.run_tfdist(root / "lag", data_dir, 400, i) for i in range(2))
        return evaluator_lag.measure(jobs)

    items: list[tuple[str, Callable[[], list[Row]]]] = [
        ("1", lambda: parse_cost.measure(root / "parse", runs=8)),
        ("2", item_2),
        ("5", item_5),
        ("2", lambda: airflow_overhead.measure(root / "airflow", runs=2, max_steps=400)),
        ("3", lambda: throughput.measure(root / "throughput", throughput.parser().parse_args([]))),
        ("3", lambda: throughput.measure(root / "mwms", throughput.parser().parse_args(MWMS))),
        ("4", lambda: launch_latency.measure(root / "latency", runs=2, counts=[2, 4, 8])),
        ("6", lambda: plan_scale.measure(runs=5, sizes=[10, 100, 1000])),
        ("7", deploy_copy_rows),
        ("9", lambda: watch_requests.measure(polls=10)),
        ("10", lambda: spot.measure(root / "spot", only=set())),
    ]
    for item, measure in items:
        if only and item not in only:
            continue
        started = time.monotonic()
        try:
            rows += measure()
        except Exception as error:  # one broken item must not hide the others' figures
            traceback.print_exc()
            rows.append(Row(item, "(failed)", None, "", False, f"{type(error).__name__}: {error}"))
        print(f"  item {item} took {time.monotonic() - started:.0f} s\n", flush=True)
    if not only or "8" in only:
        rows.append(GPU_ROW)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", default=[], metavar="ITEM", help="e.g. --only 1 6")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"machine: {machine()}\n", flush=True)
    with workspace("all") as root:
        rows = run_all(set(args.only), root)
    minutes = (time.monotonic() - started) / 60
    print(f"\n== tfdist benchmarks ({minutes:.1f} min) on {machine()}\n")
    print_table(rows)
    return 1 if any(row.figure == "(failed)" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
