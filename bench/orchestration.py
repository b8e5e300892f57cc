"""Item 2: the wall time of `tfdist run` against the same role processes started by hand.

Both run the example job (chief, 2 workers, 1 ps, evaluator; `python -m tfdist.runtime` in
every role, same steps, same data). The baseline is `bench/plain_launch.py`: hand-written
`TF_CONFIG`s and one `Popen` per role. Both are timed from outside, interpreter start-up
included, and interleaved. The role logs split the wall time into head (start to the chief's
"training from step"), the job itself, and tail (the last role's "finished" to exit).

    python -m bench.orchestration [--runs 3] [--max-steps 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BIN,
    EXAMPLE_SPEC,
    PYTHON,
    QUIET_ENV,
    REPO,
    Row,
    Stats,
    example_spec,
    first,
    interleave,
    paired_ratios,
    parse_log,
    prepare_data,
    print_table,
    workspace,
)

TARGET = 1.05
THROTTLE_SECS = float(example_spec()["eval_spec"]["throttle_secs"])


@dataclass(frozen=True)
class JobRun:
    """One finished run of the example job: where its model and role logs are."""

    way: str
    model_dir: Path
    data_dir: Path
    logs: dict[str, Path]
    started: float  # epoch seconds, just before the process was started
    ended: float
    max_steps: int
    throttle_secs: float

    def phases(self) -> dict[str, float]:
        """head: start -> chief trains; job: -> last role finished; tail: -> exit; and the
        chief's exit: its last checkpoint -> its "finished" line."""
        lines = {role: parse_log(path.read_text()) for role, path in self.logs.items()}
        training = first(lines["chief-0"], "training from step")
        saved = first(lines["chief-0"], f"saved checkpoint for step {self.max_steps}")
        done = first(lines["chief-0"], "chief-0 finished")
        finished = [first(found, f"{role} finished") for role, found in lines.items()]
        if training is None or saved is None or done is None or None in finished:
            raise RuntimeError(f"{self.way}: a role did not log its start or end: {self.logs}")
        last = max(line.time for line in finished if line is not None)
        return {
            "head": training.time - self.started,
            "job": last - training.time,
            "tail": self.ended - last,
            "chief exit": done.time - saved.time,
        }


def overrides(model_dir: Path, data_dir: Path, max_steps: int) -> list[str]:
    return [
        f"model_dir={model_dir}",
        f"data_dir={data_dir}",
        f"train_spec.max_steps={max_steps}",
    ]


def run_tfdist(root: Path, data_dir: Path, max_steps: int, index: int) -> JobRun:
    """`tfdist run` of the example job; its role logs are in the run directory."""
    model_dir, run_root = root / f"tfdist-{index}" / "model", root / f"tfdist-{index}" / "runs"
    command = [str(BIN / "tfdist"), "run", str(EXAMPLE_SPEC), "--run-root", str(run_root)]
    for pair in overrides(model_dir, data_dir, max_steps):
        command += ["--set", pair]
    output = root / f"tfdist-{index}.out"
    started = time.time()
    with output.open("wb") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True, cwd=REPO)
    ended = time.time()
    (run_dir,) = run_root.iterdir()
    logs = {path.stem: path for path in run_dir.glob("*.log")}
    return JobRun("tfdist run", model_dir, data_dir, logs, started, ended, max_steps, THROTTLE_SECS)


def run_plain(root: Path, data_dir: Path, max_steps: int, index: int) -> JobRun:
    """The same job through `plain_launch.py`."""
    model_dir, log_dir = root / f"plain-{index}" / "model", root / f"plain-{index}" / "logs"
    command = [PYTHON, str(REPO / "bench" / "plain_launch.py"), str(EXAMPLE_SPEC)]
    command += ["--log-dir", str(log_dir)]
    for pair in overrides(model_dir, data_dir, max_steps):
        command += ["--set", pair]
    env = {**os.environ, **QUIET_ENV}
    started = time.time()
    subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True)
    ended = time.time()
    logs = {path.stem: path for path in log_dir.glob("*.log")}
    return JobRun(
        "plain script", model_dir, data_dir, logs, started, ended, max_steps, THROTTLE_SECS
    )


def measure(root: Path, runs: int, max_steps: int) -> tuple[list[Row], list[JobRun]]:
    """Interleaved runs of both ways; the table row and every finished run."""
    root.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(root / "data")
    print(f"item 2: tfdist run vs plain script, example job, max_steps {max_steps}", flush=True)
    timed = interleave(
        {
            "plain script": lambda i: run_plain(root, data_dir, max_steps, i),
            "tfdist run": lambda i: run_tfdist(root, data_dir, max_steps, i),
        },
        runs,
    )
    ratios = paired_ratios(timed.seconds["tfdist run"], timed.seconds["plain script"])
    jobs: list[JobRun] = [job for found in timed.results.values() for job in found]
    parts = []
    for way in ("plain script", "tfdist run"):
        phases = [job.phases() for job in jobs if job.way == way]
        shown = ", ".join(
            f"{name} {statistics.median(p[name] for p in phases):.2f} s"
            f" (max {max(p[name] for p in phases):.2f})"
            for name in phases[0]
        )
        wall = Stats.of(timed.seconds[way]).show("{:.1f}", " s")
        parts.append(f"{way}: wall {wall} ({shown})")
    row = Row(
        "2",
        "orchestration: tfdist run / plain script (wall)",
        Stats.of(ratios),
        f"<= {TARGET}",
        statistics.median(ratios) <= TARGET,
        "; ".join(parts),
    )
    return [row], jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=400)
    args = parser.parse_args(argv)
    with workspace("orchestration") as root:
        rows, _ = measure(root, args.runs, args.max_steps)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
