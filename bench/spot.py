"""Item 12: spot capacity. What a preemption notice costs, and wall time under churn.

(a) Steps lost per notice to the chief, a ps and a worker of a parameter-server job: SIGTERM
    to the role's process with the notice handler, against the baseline, today's behaviour
    before the handler (the role died at once on SIGTERM, as on SIGKILL here). Lost = the step
    the chief had logged before the role ended minus the step training resumed from; target:
    at most the steps of 2 s of training.
(b) Wall time of the job with a worker's process SIGKILLed every 8 s (alternating workers)
    over the same job undisturbed, run side by side; target <= 1.3x.
(c) The same with a SIGTERM notice every 20 s to a random training role; target <= 1.3x.
(b) and (c) run twice, side by side: with the local launcher's warm standby
(`TFDIST_LOCAL_STANDBY=1`) and as the baseline without it (`TFDIST_LOCAL_STANDBY=0`: every
restart starts a new interpreter and imports TensorFlow), each way against its own undisturbed
run.

`python -m bench.spot [--only a b c]`. Each job is small (digits, 2 workers, 1 ps); the
goodput line of every run (`tfdist run` prints it) says where the time went.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from bench.common import PYTHON, QUIET_ENV, Row, Stats, prepare_data, print_table, workspace
from tfdist.launch.local import STANDBY_ENV

CLUSTER = {"worker": 2, "ps": 1}
RESUMED = re.compile(r"training from step (\d+) to")
STEP = re.compile(r"step (\d+)/\d+ loss")
RESTART = "----- tfdist: starting chief-0 again -----"
ENDED = re.compile(r"^tfdist: \S+ (?:was preempted|ended: killed)", re.M)  # the runner's lines
# (b), (c): restarts warm, or cold
WAYS = {"standby": {STANDBY_ENV: "1"}, "baseline": {STANDBY_ENV: "0"}}


@dataclass(frozen=True)
class JobRun:
    wall: float
    output: str
    run_dir: Path
    goodput: dict[str, Any]
    finished: bool = True  # False: stopped when it ran out of time (wall: a lower bound)


def spec(root: Path, name: str, data: Path, max_steps: int, every: int) -> dict[str, Any]:
    return {
        "name": name,
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": CLUSTER,
        "train_spec": {
            "max_steps": max_steps,
            "save_checkpoints_steps": every,
            "log_step_count_steps": 10,
        },
        "restart_policy": {"max_job_restarts": 5, "max_role_restarts": 20},
        "model_dir": str(root / name / "model"),
        "data_dir": str(data),
    }


def role_process(run_dir: Path, role: str) -> psutil.Process | None:
    """The role's own process (its supervisor's child), if it is running."""
    try:
        supervisor = psutil.Process(json.loads((run_dir / f"{role}.pid").read_text())["pid"])
        children = supervisor.children()
    except (OSError, ValueError, psutil.Error):
        return None
    return children[0] if children else None


def chief_steps(run_dir: Path) -> list[int]:
    """The steps the chief logged in its first run."""
    try:
        log = (run_dir / "chief-0.log").read_text(errors="replace")
    except OSError:
        return []
    return [int(step) for step in STEP.findall(log.split(RESTART)[0])]


def run_job(
    root: Path,
    job: dict[str, Any],
    disturb: Any = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> JobRun:
    """`tfdist run` of `job` (with `env`); `disturb(run_dir, stop)` runs in a thread meanwhile."""
    path = root / f"{job['name']}.json"
    path.write_text(json.dumps(job))
    runs = root / "runs"
    command = [PYTHON, "-m", "tfdist.cli", "run", str(path), "--run-root", str(runs)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **QUIET_ENV, **(env or {})},
    )
    stop = threading.Event()
    thread = None
    if disturb is not None:

        def launched() -> Path | None:
            found = sorted(runs.glob(f"{job['name']}-*"))
            return found[-1] if found else None

        def watch() -> None:
            while not stop.is_set() and (run_dir := launched()) is None:
                time.sleep(0.1)
            if not stop.is_set() and run_dir is not None:
                disturb(run_dir, stop)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # stopped: its wall time is more than `timeout`
        process.terminate()  # `tfdist run` stops its roles on its way out
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    stop.set()
    if thread is not None:
        thread.join(timeout=30)
    (run_dir,) = sorted(runs.glob(f"{job['name']}-*"))
    if wall >= timeout:
        print(f"  {job['name']}: stopped after {timeout:.0f} s", flush=True)
        return JobRun(wall, output, run_dir, {}, finished=False)
    if process.returncode != 0:
        raise RuntimeError(f"{job['name']} failed:\n{output[-3000:]}")
    goodput = json.loads((Path(job["model_dir"]) / "tfdist" / "goodput.json").read_text())
    print(f"  {job['name']}: {wall:.1f} s; " + _goodput_line(output), flush=True)
    return JobRun(wall, output, run_dir, goodput)


def _goodput_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tfdist: goodput")]
    return lines[-1].removeprefix("tfdist: ") if lines else "no goodput line"


def notice_once(role: str, sig: int, at_step: int) -> Any:
    def disturb(run_dir: Path, stop: threading.Event) -> None:
        while not stop.is_set():
            reached = chief_steps(run_dir)
            process = role_process(run_dir, role)
            if reached and max(reached) >= at_step and process is not None:
                process.send_signal(sig)
                return
            time.sleep(0.05)

    return disturb


def joined(run_dir: Path, role: str) -> bool:
    """Whether the role's current run has joined the job (serving, or the chief training)."""
    try:
        log = (run_dir / f"{role}.log").read_text(errors="replace")
    except OSError:
        return False
    current = log.rsplit(f"----- tfdist: starting {role} again -----", 1)[-1]
    return "training from step" in current or "serving grpc://" in current


def every(
    seconds: float, roles: list[str], sig: int, hits: list[tuple[str, float]], seed: int = 7
) -> Any:
    """Once training runs, `sig` every `seconds` to one of `roles` that has joined the job (in
    turn, or at random): a role still starting again is not hit a second time. Each hit goes
    into `hits` (role, time)."""
    chooser = random.Random(seed)

    def disturb(run_dir: Path, stop: threading.Event) -> None:
        while not stop.is_set() and not chief_steps(run_dir):
            time.sleep(0.2)
        turn = 0
        while not stop.wait(seconds):
            order = (
                roles[turn:] + roles[:turn]
                if sig == signal.SIGKILL
                else chooser.sample(roles, len(roles))
            )
            role = next((r for r in order if joined(run_dir, r)), None)
            process = role_process(run_dir, role) if role else None
            if role is None or process is None:
                continue
            turn = (roles.index(role) + 1) % len(roles)
            print(f"    {signal.Signals(sig).name} {role}", flush=True)
            hits.append((role, time.time()))
            process.send_signal(sig)

    return disturb


def back_after(run_dir: Path, hits: list[tuple[str, float]]) -> list[float]:
    """Seconds from each hit on a worker to its first `serving` line after it (a worker that
    was never back is left out)."""
    found = []
    for role, hit in hits:
        if not role.startswith("worker-"):
            continue
        log = (run_dir / f"{role}.log").read_text(errors="replace")
        back = [when for when in _serving_times(log) if when > hit]
        if back:
            found.append(back[0] - hit)
    return found


def _serving_times(log: str) -> list[float]:
    return [
        datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
        for line in log.splitlines()
        if "tfdist.serve: serving grpc://" in line
    ]


def steps_lost(run: JobRun) -> tuple[int, float]:
    """(steps lost, steps per second of the first attempt)."""
    log = (run.run_dir / "chief-0.log").read_text(errors="replace")
    attempts = log.split(RESTART)
    reached = [int(step) for step in STEP.findall(attempts[0])]
    rate = _rate(run)
    if len(attempts) == 1:  # the chief was never restarted: a worker's steps ran elsewhere
        return 0, rate
    resumed = int(RESUMED.findall(attempts[1])[0])
    return max(max(reached, default=0) - resumed, 0), rate


def _rate(run: JobRun) -> float:
    steps = run.goodput["steps"]
    return float(steps / run.goodput["productive_secs"]) if run.goodput["productive_secs"] else 0.0


def measure_lost(root: Path, data: Path) -> list[Row]:
    rows = []
    for role in ("chief-0", "ps-0", "worker-0"):
        lost: dict[str, tuple[int, float]] = {}
        for way, sig in (("handler", signal.SIGTERM), ("baseline", signal.SIGKILL)):
            name = f"lost-{role.split('-')[0]}-{way}"
            job = spec(root, name, data, max_steps=400, every=200)
            lost[way] = steps_lost(run_job(root, job, notice_once(role, sig, at_step=120)))
        (handled, rate), (baseline, _) = lost["handler"], lost["baseline"]
        two_secs = max(rate * 2, 1.0)
        rows.append(
            Row(
                "12a",
                f"steps lost per notice to {role} / steps of 2 s",
                Stats.of([handled / two_secs]),
                "<= 1",
                handled <= two_secs,
                f"{handled} steps lost with the handler, {baseline} in the baseline "
                f"(SIGTERM killed the role at once); 2 s = {two_secs:.0f} steps",
            )
        )
    return rows


def measure_churn(root: Path, data: Path, max_steps: int, only: set[str]) -> list[Row]:
    disturbances = []
    if not only or "b" in only:
        churn = partial(every, 8, ["worker-0", "worker-1"], signal.SIGKILL)
        disturbances.append(("12b", "a worker SIGKILLed every 8 s", "kills", churn))
    if not only or "c" in only:
        roles = ["chief-0", "ps-0", "worker-0", "worker-1"]
        notices = partial(every, 20, roles, signal.SIGTERM)
        disturbances.append(("12c", "a SIGTERM notice every 20 s", "notices", notices))
    walls: dict[tuple[str, str], JobRun] = {}
    back: dict[tuple[str, str], list[float]] = {}
    for way, env in WAYS.items():  # side by side: each way's undisturbed run just before
        print(f"  {way}:", flush=True)
        quiet = spec(root, f"quiet-{way}", data, max_steps, 200)
        walls[way, "quiet"] = run_job(root, quiet, env=env)
        for row, _, name, disturb in disturbances:
            hits: list[tuple[str, float]] = []
            job = spec(root, f"{name}-{way}", data, max_steps, 200)
            walls[way, row] = run_job(root, job, disturb(hits), env=env)
            back[way, row] = back_after(walls[way, row].run_dir, hits)
    rows = []
    for row, label, _, _ in disturbances:
        ratio = {way: walls[way, row].wall / walls[way, "quiet"].wall for way in WAYS}
        more = {way: "" if walls[way, row].finished else ">" for way in WAYS}
        run, quiet = walls["standby", row], walls["standby", "quiet"]
        cold, cold_quiet = walls["baseline", row], walls["baseline", "quiet"]
        rows.append(
            Row(
                row,
                f"wall: {label} / undisturbed",
                Stats.of([ratio["standby"]]),
                "<= 1.3",
                ratio["standby"] <= 1.3,
                f"{more['standby']}{run.wall:.1f} s / {quiet.wall:.1f} s, "
                f"{len(ENDED.findall(run.output))} hits, "
                f"a worker served again {_secs(back['standby', row])} after its hit; baseline "
                f"(no standby) {more['baseline']}{ratio['baseline']:.2f}x: "
                f"{more['baseline']}{cold.wall:.1f} s / "
                f"{cold_quiet.wall:.1f} s, {len(ENDED.findall(cold.output))} hits, "
                f"{_secs(back['baseline', row])}; {_goodput_line(run.output)}",
            )
        )
    return rows


def _secs(values: list[float]) -> str:
    if not values:
        return "(no worker hit)"
    stats = Stats.of(values)
    return f"{stats.median:.1f} s [{stats.low:.1f}-{stats.high:.1f}] n={stats.count}"


def measure(root: Path, only: set[str], max_steps: int = 1200) -> list[Row]:
    data = prepare_data(root / "data")
    rows = []
    if not only or "a" in only:
        rows += measure_lost(root, data)
    if not only or only & {"b", "c"}:
        rows += measure_churn(root, data, max_steps, only)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spot", description=__doc__)
    parser.add_argument("--only", nargs="+", default=[], choices=["a", "b", "c"])
    parser.add_argument("--max-steps", type=int, default=1200, help="(b) and (c) job size")
    args = parser.parse_args(argv)
    with workspace("spot") as root:
        rows = measure(root, set(args.only), args.max_steps)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
