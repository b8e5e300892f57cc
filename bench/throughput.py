"""Item 3: training steps/s of the tfdist runtime against a bare custom loop, same everything.

Candidate: `python -m tfdist.runtime` training the example model. Baseline:
`bench/bare_trainer.py`, a plain loop with the same model, optimizer, loss, `tf.data` pipeline
and strategy. Steps/s comes from the progress lines' timestamps over a steady-state window
(from step `--skip` to the last step: start-up, tracing and the final checkpoint excluded).
The input-only rate (the same dataset iterated alone) shows whether input is the bottleneck.

`--processes 0` (default): one local process each (no `TF_CONFIG`, default strategy).
`--processes N`: chief + N-1 workers under `MultiWorkerMirroredStrategy`; the runtime through
`tfdist run`, the bare loop as N processes with hand-written `TF_CONFIG`s. Every process has
its own session, as tfdist's roles do (see `bench/plain_launch.py` on scheduler autogroups).

    python -m bench.throughput [--runs 3] [--steps 4000] [--processes 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    BIN,
    PYTHON,
    QUIET_ENV,
    REPO,
    Row,
    Stats,
    example_spec,
    free_ports,
    interleave,
    paired_ratios,
    parse_log,
    prepare_data,
    print_table,
    steady_rate,
    steps,
    workspace,
    write_json,
)

TARGET = 0.97


def _spec(
    model_dir: Path, data_dir: Path, total: int, every: int, workers: int
) -> dict[str, object]:
    return example_spec(
        {
            "cluster": {"chief": 1, "worker": workers},
            "model_dir": str(model_dir),
            "data_dir": str(data_dir),
            "train_spec.max_steps": total,
            "train_spec.save_checkpoints_steps": total,  # one checkpoint, after the window
            "train_spec.log_step_count_steps": every,
        }
    )


def runtime_rate(root: Path, data_dir: Path, args: argparse.Namespace, index: int) -> float:
    """The runtime's steady steps/s (local process, or the chief under `tfdist run`)."""
    work = root / f"runtime-{index}"
    spec = _spec(work / "model", data_dir, args.steps, args.log_every, max(args.processes - 1, 0))
    env = {**os.environ, **QUIET_ENV}
    log = work / "chief.log"
    work.mkdir(parents=True)
    if args.processes == 0:
        env["TFDIST_JOB"] = json.dumps(spec)
        env.pop("TF_CONFIG", None)
        with log.open("wb") as out:
            subprocess.run(
                [PYTHON, "-m", "tfdist.runtime"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                start_new_session=True,
            )
    else:
        write_json(work / "spec.json", spec)
        command = [str(BIN / "tfdist"), "run", str(work / "spec.json")]
        command += ["--run-root", str(work / "runs")]
        subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
        (run_dir,) = (work / "runs").iterdir()
        log = run_dir / "chief-0.log"
    return steady_rate(steps(parse_log(log.read_text())), args.skip)


def bare_rate(
    root: Path, data_dir: Path, args: argparse.Namespace, index: int, input_only: bool = False
) -> float:
    """The bare loop's steady steps/s (or the input pipeline's batches/s)."""
    work = root / f"bare-{index}{'-input' if input_only else ''}"
    work.mkdir(parents=True)
    command = [PYTHON, "-m", "bench.bare_trainer", "--data-dir", str(data_dir)]
    command += ["--steps", str(args.steps), "--log-every", str(args.log_every)]
    command += ["--input-only"] if input_only else []
    count = max(args.processes, 1)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    cluster = {"chief": addresses[:1], **({"worker": addresses[1:]} if count > 1 else {})}
    processes = []
    for rank in range(count):
        env = {**os.environ, **QUIET_ENV}
        env.pop("TF_CONFIG", None)
        if args.processes:
            task = (
                {"type": "chief", "index": 0}
                if rank == 0
                else {"type": "worker", "index": rank - 1}
            )
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        with (work / f"{rank}.log").open("wb") as out:
            processes.append(
                subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            )
    codes = [process.wait() for process in processes]
    if any(codes):
        raise RuntimeError(f"bare trainer failed ({codes}); see {work}")
    return steady_rate(steps(parse_log((work / "0.log").read_text())), args.skip)


def measure(root: Path, args: argparse.Namespace) -> list[Row]:
    root.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(root / "data")
    shape = "local process" if args.processes == 0 else f"{args.processes} processes (MWMS)"
    print(f"item 3: steps/s, tfdist runtime vs bare loop, {shape}", flush=True)
    ways: dict[str, Callable[[int], float]] = {
        "bare loop": lambda i: bare_rate(root, data_dir, args, i),
        "tfdist runtime": lambda i: runtime_rate(root, data_dir, args, i),
    }
    if args.processes == 0:
        ways["input only"] = lambda i: bare_rate(root, data_dir, args, i, input_only=True)
    timed = interleave(ways, args.runs)
    rates = timed.results
    ratios = paired_ratios(rates["tfdist runtime"], rates["bare loop"])
    detail = ", ".join(
        f"{way} {Stats.of(r).show('{:.0f}', ' batches/s' if way == 'input only' else ' steps/s')}"
        for way, r in rates.items()
    )
    if "input only" in rates:
        headroom = statistics.median(rates["input only"]) / statistics.median(rates["bare loop"])
        detail += f"; input alone is {headroom:.1f}x the training rate"
    detail += f"; window: steps {args.skip}-{args.steps}"
    return [
        Row(
            "3",
            f"throughput: runtime / bare steps/s ({shape})",
            Stats.of(ratios),
            f">= {TARGET}",
            statistics.median(ratios) >= TARGET,
            detail,
        )
    ]


def parser() -> argparse.ArgumentParser:
    parsed = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parsed.add_argument("--runs", type=int, default=3)
    parsed.add_argument("--steps", type=int, default=4000)
    parsed.add_argument("--log-every", type=int, default=250)
    parsed.add_argument("--skip", type=int, default=500, help="steps left out of the window")
    parsed.add_argument("--processes", type=int, default=0)
    return parsed


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with workspace("throughput") as root:
        rows = measure(root, args)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
