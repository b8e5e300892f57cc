"""Item 2, Airflow part: the example job through `airflow dags test` of its train-and-evaluate
group (`bench/dags/bench_train_and_evaluate.py`) against `tfdist run` of the same spec.

A throwaway Airflow home (SQLite, the test suite's `AirflowHome`) with only the bench DAG.
Runs are interleaved. Each wall time is split at the same points for both: the launch (the
run directory's `handle.json` written), the last role's exit (its exit record). For `dags
test`, the task instances' start and end times in the metadata DB split it further: CLI
start-up to the launch task, the launch task itself (its start-up, then the operator), the
watch tasks after the last role ended (the trigger's poll interval, then the watch tasks run
one at a time), the teardown task, and the CLI's shutdown.

    python -m bench.airflow_overhead [--runs 2] [--max-steps 400]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    REPO,
    Row,
    Stats,
    interleave,
    paired_ratios,
    prepare_data,
    print_table,
    workspace,
)
from bench.orchestration import run_tfdist

sys.path.insert(0, str(REPO / "tests" / "integration"))
from airflow_home import AirflowHome

DAG_ID = "bench_train_and_evaluate"


def _epoch(value: datetime | str | None) -> float:
    """Airflow keeps UTC timestamps without a zone in SQLite."""
    if value is None:
        raise ValueError("a task instance has no start or end time")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC).timestamp()


def role_times(run_dir: Path) -> tuple[float, float]:
    """When the roles were launched (handle written) and when the last one exited."""
    exits = [json.loads(path.read_text())["ended"] for path in run_dir.glob("*.exit")]
    return (run_dir / "handle.json").stat().st_mtime, max(exits)


def tfdist_phases(root: Path, data_dir: Path, max_steps: int, index: int) -> dict[str, float]:
    job = run_tfdist(root, data_dir, max_steps, index)
    launched, last_exit = role_times(job.logs["chief-0"].parent)
    return {
        "to launch": launched - job.started,
        "roles": last_exit - launched,
        "after roles": job.ended - last_exit,
    }


def _logged(stdout: str, marker: str) -> list[float]:
    """The times of the lines of `airflow dags test` output that hold `marker`."""
    found = [
        _epoch(line.split(" ", 1)[0].removesuffix("Z"))
        for line in stdout.splitlines()
        if marker in line and line[:4].isdigit()
    ]
    if not found:
        raise ValueError(f"no line with {marker!r} in the output of airflow dags test")
    return found


def dags_test_phases(home: AirflowHome, max_steps: int) -> dict[str, float]:
    started = time.time()
    result = home.dags_test(DAG_ID, {"max_steps": max_steps})
    ended = time.time()
    if result.returncode != 0:
        raise RuntimeError(f"airflow dags test failed:\n{result.stdout[-3000:]}")
    run_id = home.runs(DAG_ID)[-1][0]
    rows = home.tasks(DAG_ID, run_id)
    launch = next(row for row in rows if row.task_id.endswith(".launch"))
    stop = next(row for row in rows if row.task_id.endswith(".stop"))
    watches = [row for row in rows if row.map_index >= 0]
    with sqlite3.connect(home.home / "airflow.db") as db:
        (run_start,) = db.execute(
            "SELECT start_date FROM dag_run WHERE dag_id=? AND run_id=?", (DAG_ID, run_id)
        ).fetchone()
    handles = sorted(Path(home.env["TFDIST_RUN_ROOT"]).rglob("handle.json"), key=_mtime)
    launched, last_exit = role_times(handles[-1].parent)
    task_started = _logged(result.stdout, "Task started")[0]  # the launch task: the first
    # The last deferred watch's trigger; a watch that starts after its role ended never defers.
    triggered = max(_logged(result.stdout, "Trigger completed")[-1], last_exit)
    watched = max(_epoch(row.end_date) for row in watches)
    return {
        "to launch": launched - started,
        "  CLI start-up, DAG parse, run created": _epoch(run_start) - started,
        "  run created to the launch task": _epoch(launch.start_date) - _epoch(run_start),
        "  launch task start-up (execution API)": task_started - _epoch(launch.start_date),
        "  launch operator until roles started": launched - task_started,
        "roles": last_exit - launched,
        "after roles": ended - last_exit,
        "  trigger saw the last exit (polling)": triggered - last_exit,
        "  then the watch tasks ended": watched - triggered,
        "  teardown task (stop)": _epoch(stop.end_date) - watched,
        "  CLI shutdown": ended - _epoch(stop.end_date),
    }


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def measure(root: Path, runs: int, max_steps: int) -> list[Row]:
    root.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(root / "data")
    home = AirflowHome(root / "airflow-home")
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "bench" / "dags")
    home.env["TFDIST_BENCH_DATA_DIR"] = str(data_dir)
    home.migrate()
    print(
        f"item 2: airflow dags test vs tfdist run, example job, max_steps {max_steps}", flush=True
    )
    timed = interleave(
        {
            "tfdist run": lambda i: tfdist_phases(root, data_dir, max_steps, i),
            "airflow dags test": lambda _: dags_test_phases(home, max_steps),
        },
        runs,
    )
    ratios = paired_ratios(timed.seconds["airflow dags test"], timed.seconds["tfdist run"])
    added = [
        a - t
        for a, t in zip(
            timed.seconds["airflow dags test"], timed.seconds["tfdist run"], strict=True
        )
    ]
    parts = [f"added {Stats.of(added).show('{:.1f}', ' s')}"]
    for way, found in timed.results.items():
        wall = statistics.median(timed.seconds[way])
        phases = ", ".join(
            f"{name.strip()} {statistics.median(p[name] for p in found):.2f} s" for name in found[0]
        )
        parts.append(f"{way} {wall:.1f} s: {phases}")
        print(f"  {way}, medians: wall {wall:.2f} s")
        for name in found[0]:
            print(f"    {name:<44} {statistics.median(p[name] for p in found):6.2f} s")
    return [
        Row(
            "2",
            "airflow dags test / tfdist run (wall)",
            Stats.of(ratios),
            "report",
            None,
            "; ".join(parts),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.airflow_overhead", description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=400)
    args = parser.parse_args(argv)
    with workspace("airflow-overhead") as root:
        rows = measure(root, args.runs, args.max_steps)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
