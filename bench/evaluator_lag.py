"""Item 5: from the final checkpoint written to its eval record, and to the gate's decision.

For each finished run of the example job: the final checkpoint's time is the mtime of
`ckpt-<max_steps>.index` (the chief's "saved checkpoint" log line is shown too), the record's
time is the `timestamp` the evaluator wrote into `eval/record-<max_steps>.json`, and the gate
is `tfdist.gate.decide` on that record, timed here (read included). The bound it is held to
is `throttle_secs` + the evaluation itself + 2 s, so the ratio lag / bound must stay <= 1. The
evaluation itself is timed in a separate process on the same checkpoint: cold (the first
evaluation traces the model) when the final record was the evaluator's first, else warm.

    python -m bench.evaluator_lag [--runs 2]        # runs the example job with `tfdist run`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import PYTHON, QUIET_ENV, REPO, Row, Stats, first, parse_log, print_table
from bench.orchestration import JobRun

SLACK_SECS = 2.0


def time_evaluation(model_dir: Path, data_dir: str) -> dict[str, float]:
    """Seconds of one evaluation of the latest checkpoint: cold (first) and warm (second)."""
    result = subprocess.run(
        [PYTHON, "-m", "bench.evaluator_lag", "--time-eval", str(model_dir), data_dir],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **QUIET_ENV},
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _time_eval_here(model_dir: str, data_dir: str) -> dict[str, float]:
    """In a fresh process: build the evaluator's model and evaluate the latest checkpoint twice."""
    import tensorflow as tf

    from bench.common import example_spec
    from tfdist.runtime.contract import RunContext, load_trainer
    from tfdist.runtime.evaluate import Evaluation
    from tfdist.spec import parse_spec

    spec = parse_spec(
        example_spec({"model_dir": model_dir, "data_dir": data_dir, "eval_spec.name": "bench"})
    )
    trainer = load_trainer(str(spec.trainer.entrypoint))
    ctx = RunContext(spec.model_dir, spec.data_dir, "evaluator", 0, 1)
    evaluation = Evaluation(spec, trainer, ctx)
    latest = tf.train.latest_checkpoint(model_dir)
    times = {}
    for name in ("cold", "warm"):
        started = time.perf_counter()
        evaluation.run(latest)
        times[name] = time.perf_counter() - started
    return times


def gate_seconds(job: JobRun) -> float:
    """Read the final record and decide on it, as the gate task does."""
    from tfdist.gate import GateSpec, decide, read_final_eval
    from tfdist.storage import LocalStorage

    started = time.perf_counter()
    record = read_final_eval(LocalStorage(), str(job.model_dir), max_steps=job.max_steps)
    decide(record, GateSpec.from_params({"accuracy": {"min": 0.5}}), None, now=time.time())
    return time.perf_counter() - started


def lags(job: JobRun) -> dict[str, float]:
    final = job.max_steps
    checkpoint = (job.model_dir / f"ckpt-{final}.index").stat().st_mtime
    records = sorted((job.model_dir / "eval").glob("record-*.json"))
    record = json.loads((job.model_dir / "eval" / f"record-{final:012d}.json").read_text())
    saved = first(parse_log(job.logs["chief-0"].read_text()), f"saved checkpoint for step {final}")
    gate = gate_seconds(job)
    return {
        "record": record["timestamp"] - checkpoint,
        "gate": record["timestamp"] - checkpoint + gate,
        "decide": gate,
        "log_vs_mtime": (saved.time - checkpoint) if saved else float("nan"),
        "first_record": float(len(records) == 1),
    }


def measure(jobs: Sequence[JobRun]) -> list[Row]:
    """The lag of every run, against its bound."""
    evaluation = time_evaluation(jobs[0].model_dir, str(jobs[0].data_dir))
    found = [lags(job) for job in jobs]
    ratios = []
    for job, lag in zip(jobs, found, strict=True):
        itself = evaluation["cold"] if lag["first_record"] else evaluation["warm"]
        ratios.append(lag["gate"] / (job.throttle_secs + itself + SLACK_SECS))
    detail = (
        f"to record {Stats.of([f['record'] for f in found]).show('{:.2f}', ' s')}, "
        f"to gate decision {Stats.of([f['gate'] for f in found]).show('{:.2f}', ' s')} "
        f"(read + decide {statistics.median(f['decide'] for f in found) * 1000:.1f} ms); "
        f"evaluation itself cold {evaluation['cold']:.2f} s, warm {evaluation['warm']:.2f} s; "
        f"throttle_secs {jobs[0].throttle_secs:g}; the chief logs 'saved checkpoint' "
        f"{statistics.median(f['log_vs_mtime'] for f in found):+.3f} s after the index mtime"
    )
    return [
        Row(
            "5",
            "evaluator lag: to gate / (throttle + eval + 2 s)",
            Stats.of(ratios),
            "<= 1.0",
            statistics.median(ratios) <= 1.0,
            detail,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluator_lag", description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--time-eval", nargs=2, metavar=("MODEL_DIR", "DATA_DIR"))
    args = parser.parse_args(argv)
    if args.time_eval:
        print(json.dumps(_time_eval_here(*args.time_eval)))
        sys.stdout.flush()
        os._exit(0)
    from bench.common import prepare_data, workspace
    from bench.orchestration import run_tfdist

    with workspace("evaluator-lag") as root:
        data_dir = prepare_data(root / "data")
        jobs = [run_tfdist(root, data_dir, args.max_steps, i) for i in range(args.runs)]
        rows = measure(jobs)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
