"""Item 1: the cost of parsing `dags/nightly_retrain.py` against the same DAG shape built from
EmptyOperators (`bench/empty_dag.py`).

Each parse is a fresh interpreter that imports `airflow.sdk`, then executes the DAG file by
path, and reports which heavy modules got loaded. Two figures, interleaved:

- full process: the interpreter's wall time, start to exit (both pay Airflow's import);
- DAG file only: from after `import airflow.sdk` to the end of the DAG file, which is what
  the file itself adds to every parse.

`-X importtime` of the nightly DAG then shows where its own time goes, by package.

    python -m bench.parse_cost [--runs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from bench.common import PYTHON, REPO, Row, Stats, interleave, paired_ratios, print_table, workspace

TARGET = 1.2
NIGHTLY = REPO / "dags" / "nightly_retrain.py"
EMPTY = REPO / "bench" / "empty_dag.py"
HEAVY = ("tensorflow", "keras", "kubernetes", "kubernetes_asyncio", "google")
PROBE = f"""
import json, sys, time
started = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter()
import importlib.util
spec = importlib.util.spec_from_file_location("bench_dag_file", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
done = time.perf_counter()
heavy = sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r})
print(json.dumps({{"sdk": sdk - started, "dag": done - sdk, "heavy": heavy}}))
"""


def airflow_env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TFDIST_BASE_DIR": str(root / "tfdist"),
    }


def parse_once(dag_file: Path, env: dict[str, str]) -> dict[str, object]:
    started = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-c", PROBE, str(dag_file)], env=env, capture_output=True, text=True, check=True
    )
    report = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    report["process"] = time.perf_counter() - started
    return report


def import_profile(env: dict[str, str]) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """`-X importtime` of the nightly DAG after `airflow.sdk`: self ms by top-level package,
    and the cumulative ms of each outermost import."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", PROBE, str(NIGHTLY)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    start = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| airflow.sdk"))
    by_package: dict[str, float] = defaultdict(float)
    outermost = []
    for line in lines[start + 1 :]:
        own, cumulative, name = line.removeprefix("import time:").split("|")
        module = name.strip()
        by_package[module.split(".")[0]] += int(own) / 1000
        if len(name) - len(name.lstrip()) == 1:  # nesting is shown by indentation
            outermost.append((int(cumulative) / 1000, module))
    return dict(by_package), sorted(outermost, reverse=True)


def measure(root: Path, runs: int) -> list[Row]:
    root.mkdir(parents=True, exist_ok=True)
    env = airflow_env(root)
    parse_once(EMPTY, env)  # warm the file cache and byte-code of both
    parse_once(NIGHTLY, env)
    print("item 1: DAG parse cost, nightly_retrain vs the same shape of EmptyOperators", flush=True)
    timed = interleave(
        {
            "empty shape": lambda _: parse_once(EMPTY, env),
            "nightly": lambda _: parse_once(NIGHTLY, env),
        },
        runs,
    )
    real, empty = timed.results["nightly"], timed.results["empty shape"]
    heavy = sorted({name for report in real for name in report["heavy"]})
    process = paired_ratios([r["process"] for r in real], [r["process"] for r in empty])
    dag_only = paired_ratios([r["dag"] for r in real], [r["dag"] for r in empty])

    def shown(key: str) -> str:
        return ", ".join(
            f"{name} {statistics.median(r[key] for r in found) * 1000:.0f} ms"
            for name, found in (("nightly", real), ("empty", empty))
        )

    by_package, outermost = import_profile(env)
    print("  -X importtime of dags/nightly_retrain.py after airflow.sdk, outermost imports:")
    for milliseconds, module in outermost:
        print(f"    {milliseconds:7.1f} ms cumulative  {module}")
    packages = sorted(by_package.items(), key=lambda item: -item[1])
    profile = ", ".join(f"{name} {ms:.0f} ms" for name, ms in packages[:5])
    return [
        Row(
            "1",
            "DAG parse, full process: nightly / empty shape",
            Stats.of(process),
            f"<= {TARGET}",
            statistics.median(process) <= TARGET and not heavy,
            f"{shown('process')}; heavy modules loaded: {', '.join(heavy) or 'none'}",
        ),
        Row(
            "1",
            "DAG parse, DAG file only (after airflow.sdk)",
            Stats.of(dag_only),
            f"<= {TARGET}",
            statistics.median(dag_only) <= TARGET,
            f"{shown('dag')}; import self time by package (importtime): {profile}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with workspace("parse-cost") as root:
        rows = measure(root, args.runs)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
