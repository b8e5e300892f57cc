"""Item 4: launch and rendezvous latency for 2, 4 and 8 roles (chief + N-1 all-reduce workers).

Each job is launched with tfdist's `LocalLauncher`, as `tfdist run` does, and timed from just
before `launch()`:

- spawned: `launch()` returned (every supervisor started);
- running: every role process exists (each supervisor's child);
- TF lib loaded: the last role's TensorFlow C++ library logged its first line (early in
  `import tensorflow`);
- ready: the last training role logged "training from step" (strategy and model built);
- first step: the chief logged step 1 (the first all-reduce step across all roles).

Side by side (in the first round), the floor: as many plain `python -c "import tensorflow"`
processes started together, timed until the last one has imported it; on a small machine it
is most of the latency.
The ratio in the table is the time to the first step with 8 roles over that with 2 roles:
how it grows when every process competes for the same cores.

    python -m bench.launch_latency [--runs 2] [--roles 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import psutil

from bench.common import (
    PYTHON,
    QUIET_ENV,
    Row,
    Stats,
    example_spec,
    first,
    parse_log,
    prepare_data,
    print_table,
    steps,
    workspace,
)

POLL_SECS = 0.02
TIMEOUT_SECS = 300.0
MILESTONES = ("spawned", "running", "TF lib loaded", "ready", "first step", "import floor")


def _role_started(run_dir: Path, role: str) -> bool:
    """The supervisor of `role` has started the role process itself."""
    try:
        pid = int((run_dir / f"{role}.pid").read_text().split('"pid": ')[1].split(",")[0])
        return bool(psutil.Process(pid).children())
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        return False


def launch_once(root: Path, data_dir: Path, roles: int, index: int) -> dict[str, float]:
    """Launch one job and return the seconds from launch to each milestone."""
    from tfdist.backend import RoleState
    from tfdist.launch.local import LocalLauncher
    from tfdist.plan import plan
    from tfdist.spec import parse_spec

    work = root / f"roles{roles}-{index}"
    spec = parse_spec(
        example_spec(
            {
                "cluster": {"chief": 1, "worker": roles - 1},
                "model_dir": str(work / "model"),
                "data_dir": str(data_dir),
                "train_spec.max_steps": 10,
                "train_spec.save_checkpoints_steps": 10,
                "train_spec.log_step_count_steps": 1,
                # TensorFlow's first start-up line marks its load ("TF C++ lib loaded").
                "trainer.env.TFDIST_TF_LOG_LEVEL": "info",
            }
        )
    )
    launcher = LocalLauncher(work / "runs", bind_to_parent=True)
    job = plan(spec, launcher.addresses(spec), python=PYTHON)
    started = time.time()
    handle = launcher.launch(job)
    times = {"spawned": time.time() - started}
    run_dir = Path(handle.job_id)
    deadline = time.monotonic() + TIMEOUT_SECS
    try:
        pending = set(handle.roles)
        while pending and time.monotonic() < deadline:
            pending = {role for role in pending if not _role_started(run_dir, role)}
            time.sleep(POLL_SECS)
        times["running"] = time.time() - started
        while time.monotonic() < deadline:
            states = [launcher.statuses(handle)[role].state for role in handle.roles]
            if RoleState.FAILED in states:
                raise RuntimeError(f"a role failed; see {run_dir}")
            if all(state is RoleState.SUCCEEDED for state in states):
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"{roles} roles did not finish in {TIMEOUT_SECS} s: {run_dir}")
    finally:
        launcher.stop(handle)
    logs = {role: parse_log((run_dir / f"{role}.log").read_text()) for role in handle.roles}
    loaded = [next(line for line in found if line.logger == "tf-loaded") for found in logs.values()]
    ready = [first(found, "training from step") for found in logs.values()]
    first_step = steps(logs["chief-0"])[0]
    if any(line is None for line in ready) or first_step[1] != 1:
        raise RuntimeError(f"missing progress lines in {run_dir}")
    times["TF lib loaded"] = max(line.time for line in loaded) - started
    times["ready"] = max(line.time for line in ready if line) - started
    times["first step"] = first_step[0] - started
    return times


def import_floor(roles: int) -> float:
    """Seconds until `roles` processes started together have all imported TensorFlow."""
    code = "import os, time, tensorflow; print(time.time(), flush=True); os._exit(0)"
    env = {**os.environ, **QUIET_ENV}
    started = time.time()
    processes = [
        subprocess.Popen(
            [PYTHON, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # one session each, as the roles have
        )
        for _ in range(roles)
    ]
    imported = [float(process.communicate()[0]) for process in processes]
    return max(imported) - started


def measure(root: Path, runs: int, counts: list[int]) -> list[Row]:
    root.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(root / "data", shards=max(counts))
    print(f"item 4: launch latency for {counts} roles, {runs} runs each", flush=True)
    found: dict[int, list[dict[str, float]]] = {count: [] for count in counts}
    for index in range(runs):
        for count in counts if index % 2 == 0 else counts[::-1]:
            times = launch_once(root, data_dir, count, index)
            if index == 0:  # once per size: it is context, and costly on small machines
                times["import floor"] = import_floor(count)
            found[count].append(times)
            print(
                f"  run {index + 1}/{runs} {count} roles: first step {times['first step']:.2f} s"
                + (f", import floor {times['import floor']:.2f} s" if index == 0 else ""),
                flush=True,
            )
    lines = []
    for count in counts:
        medians = {m: statistics.median(t[m] for t in found[count] if m in t) for m in MILESTONES}
        lines.append(f"{count} roles: " + ", ".join(f"{m} {v:.2f} s" for m, v in medians.items()))
    low, high = min(counts), max(counts)
    growth = [
        big["first step"] / small["first step"]
        for big, small in zip(found[high], found[low], strict=True)
    ]
    return [
        Row(
            "4",
            f"launch to first step: {high} roles / {low} roles",
            Stats.of(growth),
            "report",
            None,
            "medians from launch: " + "; ".join(lines),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch_latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--roles", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args(argv)
    with workspace("launch-latency") as root:
        rows = measure(root, args.runs, args.roles)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
