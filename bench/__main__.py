"""`python -m bench` (`make bench`): every measurement, then one table of ratios and targets.

Each item is also a module of its own (`python -m bench.parse_cost`, ...). The whole run is
sized to finish in well under 15 minutes on 2 cores (item 12, spot capacity, adds about 12);
`--only 1 6` runs some items alone. `--smoke` runs every item once at its smallest size: it
proves each still runs (the exit status is 1 when one failed), its figures mean nothing;
`make test` runs it.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import (
    airflow_overhead,
    evaluator_lag,
    launch_latency,
    log_bytes,
    orchestration,
    parse_cost,
    plan_scale,
    spot,
    throughput,
    view_scale,
    watch_requests,
)
from bench.common import REPO, Row, Stats, prepare_data, print_table, workspace

DEPLOY_COPY = REPO / "bench" / "deploy_copy.py"
MWMS = ("--processes", "2", "--steps", "1200", "--log-every", "100", "--skip", "200")
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


@dataclass(frozen=True)
class Sizes:
    """How much each item measures."""

    parse_runs: int = 8
    job_runs: int = 5
    max_steps: int = 400
    airflow_runs: int = 2
    throughput: tuple[str, ...] = ()
    mwms: tuple[str, ...] = MWMS
    latency_runs: int = 2
    latency_counts: tuple[int, ...] = (2, 4, 8)
    plan_runs: int = 5
    plan_sizes: tuple[int, ...] = (10, 100, 1000)
    deploy_copy: tuple[str, ...] = ()
    polls: int = 10
    log_polls: int = 5
    view_runs: int = 5
    spot: tuple[str, ...] = ()  # which rows: a, b, c; () is all
    spot_steps: int = 1200


FULL = Sizes()
SMOKE = Sizes(
    parse_runs=1,
    job_runs=1,
    max_steps=20,
    airflow_runs=1,
    throughput=("--runs", "1", "--steps", "40", "--log-every", "10", "--skip", "10"),
    mwms=("--processes", "2", "--runs", "1", "--steps", "40", "--log-every", "10", "--skip", "10"),
    latency_runs=1,
    latency_counts=(2,),
    plan_runs=1,
    plan_sizes=(10,),
    deploy_copy=("--files", "4", "--size-kb", "1", "--runs", "1"),
    polls=2,
    log_polls=1,
    view_runs=1,
    spot=("b",),
    spot_steps=60,
)


def deploy_copy_rows(argv: Sequence[str] = ()) -> list[Row]:
    """Item 7 through `bench.deploy_copy.main`, its table parsed from what it prints."""
    if not DEPLOY_COPY.exists():
        return [Row("7", "deploy copy", None, "report", None, "see bench/deploy_copy.py")]
    from bench import deploy_copy

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        deploy_copy.main(list(argv))
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


def run_all(only: set[str], root: Path, sizes: Sizes = FULL) -> list[Row]:
    rows: list[Row] = []
    jobs: list[orchestration.JobRun] = []
    steps = sizes.max_steps

    def item_2() -> list[Row]:
        found, done = orchestration.measure(root / "orchestration", sizes.job_runs, steps)
        jobs.extend(done)
        return found

    def item_5() -> list[Row]:
        if not jobs:  # item 2 was left out: run the job twice for the lag alone
            (root / "lag").mkdir()
            data_dir = prepare_data(root / "lag" / "data")
            lag = root / "lag"
            jobs.extend(orchestration.run_tfdist(lag, data_dir, steps, i) for i in range(2))
        return evaluator_lag.measure(jobs)

    def item_3(name: str, argv: Sequence[str]) -> list[Row]:
        return throughput.measure(root / name, throughput.parser().parse_args(list(argv)))

    items: list[tuple[str, Callable[[], list[Row]]]] = [
        ("1", lambda: parse_cost.measure(root / "parse", runs=sizes.parse_runs)),
        ("2", item_2),
        ("5", item_5),
        ("2", lambda: airflow_overhead.measure(root / "airflow", sizes.airflow_runs, steps)),
        ("3", lambda: item_3("throughput", sizes.throughput)),
        ("3", lambda: item_3("mwms", sizes.mwms)),
        (
            "4",
            lambda: launch_latency.measure(
                root / "latency", runs=sizes.latency_runs, counts=list(sizes.latency_counts)
            ),
        ),
        ("6", lambda: plan_scale.measure(runs=sizes.plan_runs, sizes=list(sizes.plan_sizes))),
        ("7", lambda: deploy_copy_rows(sizes.deploy_copy)),
        ("9", lambda: watch_requests.measure(polls=sizes.polls)),
        ("10", lambda: log_bytes.measure(polls=sizes.log_polls)),
        ("11", lambda: view_scale.measure(runs=sizes.view_runs)),
        ("12", lambda: spot.measure(root / "spot", set(sizes.spot), sizes.spot_steps)),
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
    parser.add_argument("--smoke", action="store_true", help="every item once, smallest size")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"machine: {machine()}\n", flush=True)
    with workspace("all") as root:
        rows = run_all(set(args.only), root, SMOKE if args.smoke else FULL)
    minutes = (time.monotonic() - started) / 60
    print(f"\n== tfdist benchmarks ({minutes:.1f} min) on {machine()}\n")
    print_table(rows)
    return 1 if any(row.figure == "(failed)" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
