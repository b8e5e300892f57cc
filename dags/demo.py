"""`make demo` (`python dags/demo.py`): run the nightly DAG once on a local Airflow under `var/`.

Sets up Airflow with SQLite in `<root>/airflow`, runs `airflow dags test nightly_retrain` while
showing a compact progress view (the full log goes to `<root>/demo-<time>.log`), then prints
what the run left behind: each task's state, the final eval metrics, the gate's decision, the
deployed version and its predictions on a few digits. Exits non-zero when the run failed or
when a role process is still running afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psutil

from tfdist.deploy import Deployment, latest_deployment
from tfdist.gate import read_blessing
from tfdist.storage import LocalStorage
from tfdist_airflow.backends import LocalBackend
from tfdist_airflow.runs import run_model_dir, run_scope

DAG_ID = "nightly_retrain"
GROUP_ID = "train_and_evaluate"
MODEL_NAME = "digits"
ROLE_MODULES = ("tfdist.launch.supervise", "tfdist.runtime")
TASK_ORDER = ("prepare_data", "launch", "watch", "stop", "gate", "export", "deploy")
PREDICTED_EXAMPLES = 10
FAILED_STATES = ("failed", "upstream_failed", "up_for_retry")

_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
_STATE = re.compile(r"Task instance state updated .*\bnew_state=(\w+)")
_EXCEPTION = re.compile(r"(?:[\w.]+\.)?(\w+(?:Error|Exception|Failed)): .*")  # a traceback's end
_LAUNCHED = re.compile(r"\blaunched ([a-z0-9, -]+); model_dir")
_ROLE_LINE = re.compile(r"\S+ ([a-z]+-\d+) (INFO|WARNING|ERROR|CRITICAL) tfdist[\w.]*: (.*)")


@dataclass(frozen=True)
class Demo:
    """Where the demo keeps everything: `root` (default `<repo>/var`) inside the repo."""

    repo: Path
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def base(self) -> Path:
        return self.root / "tfdist"

    @property
    def run_root(self) -> Path:
        return self.base / "runs"

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    def env(self) -> dict[str, str]:
        """The environment of every `airflow` command the demo runs."""
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
            "TFDIST_BASE_DIR": str(self.base),
            "TFDIST_RUN_ROOT": str(self.run_root),
            "NO_COLOR": "1",  # plain log lines, whatever the terminal
        }

    def show(self, path: str | Path) -> str:
        """`path` relative to the repo when it is inside it."""
        path = Path(path)
        return str(path.relative_to(self.repo)) if path.is_relative_to(self.repo) else str(path)


def airflow(*args: str) -> list[str]:
    """The `airflow` command installed next to this interpreter."""
    return [str(Path(sys.executable).parent / "airflow"), *args]


def migrate(demo: Demo) -> bool:
    """`airflow db migrate`, quietly; prints its output only when it fails."""
    demo.home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print("Setting up the Airflow database ...", end=" ", flush=True)
    result = subprocess.run(
        airflow("db", "migrate"), env=demo.env(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"failed (exit code {result.returncode}):\n{result.stdout}{result.stderr}")
        return False
    print(f"done ({time.monotonic() - started:.0f} s)")
    return True


def tee(lines: Iterable[str], log: IO[str]) -> Iterator[str]:
    """Each line, after writing it to `log`."""
    for line in lines:
        log.write(line)
        yield line.rstrip("\n")


def stamp(started: float, text: str) -> str:
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    return f"  [{minutes:2d}:{seconds:02d}] {text}"


def progress(lines: Iterable[str], started: float) -> Iterator[str]:
    """One line per task start and end (and why it failed), from `airflow dags test`."""
    roles: list[str] = []  # the watch tasks' map indexes, in order
    state = "?"
    error = ""

    def name(task_id: str, map_index: str) -> str:
        index = int(map_index)
        if index < 0:
            return task_id
        return f"{task_id}[{roles[index] if index < len(roles) else index}]"

    for line in lines:
        if match := _START.search(line):
            yield stamp(started, f"{name(*match.groups())} started")
            error = ""
        elif match := _STATE.search(line):
            state = match.group(1)
        elif match := _END.search(line):
            yield stamp(started, f"{name(*match.groups())} {state}")
            if error and state in FAILED_STATES:
                yield stamp(started, f"    {error}")
        elif match := _EXCEPTION.fullmatch(line):
            error = match.group(0)
        elif match := _LAUNCHED.search(line):
            roles = match.group(1).split(", ")


def follow_roles(run_root: Path, started: float, done: threading.Event) -> None:
    """Print the roles' training and eval progress from their log files, as they write it.

    (A watch task streams its role's log only once it runs, and `dags test` runs the watch
    tasks one at a time, so the Airflow log shows most roles' progress late.)
    """
    offsets = {path: path.stat().st_size for path in run_root.rglob("*.log")}
    while not done.is_set():
        done.wait(1.0)
        for path in sorted(run_root.rglob("*.log")):
            with path.open("rb") as log:
                log.seek(offsets.get(path, 0))
                data = log.read()
            end = data.rfind(b"\n") + 1  # whole lines only
            offsets[path] = offsets.get(path, 0) + end
            for line in data[:end].decode(errors="replace").splitlines():
                if match := _ROLE_LINE.match(line):
                    role, level, message = match.groups()
                    if level != "INFO" or message.startswith(("step ", "eval at step")):
                        print(stamp(started, f"    {role}: {message}"), flush=True)
                elif line.startswith("----- tfdist:"):
                    print(stamp(started, f"    {path.stem}: {line.strip('- ')}"), flush=True)


def run_dag(demo: Demo, conf: dict[str, Any], log_path: Path, timeout: float) -> int:
    """`airflow dags test` with a progress view; returns its exit code (negative: killed)."""
    dag_file = demo.repo / "dags" / f"{DAG_ID}.py"  # this DAG only, not the whole folder
    command = airflow("dags", "test", DAG_ID, "-f", str(dag_file), "-c", json.dumps(conf))
    print(f"Running {DAG_ID} with conf {json.dumps(conf)} (full log: {demo.show(log_path)})")
    started = time.monotonic()
    done = threading.Event()
    follower = threading.Thread(target=follow_roles, args=(demo.run_root, started, done))
    follower.start()
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            env=demo.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process,
    ):

        def expire() -> None:
            print(f"timed out after {timeout:.0f} s: stopping airflow dags test", flush=True)
            process.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            assert process.stdout is not None
            for text in progress(tee(process.stdout, log), started):
                print(text, flush=True)
        except KeyboardInterrupt:
            print("interrupted: stopping airflow dags test", flush=True)
            process.kill()
        finally:
            timer.cancel()
            done.set()
            follower.join()
        return process.wait()


def latest_run(demo: Demo) -> tuple[int, str, str] | None:
    """The newest run of the DAG: (id, run_id, state)."""
    if not demo.db.exists():
        return None
    with sqlite3.connect(demo.db) as db:
        row = db.execute(
            "SELECT id, run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1",
            (DAG_ID,),
        ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def launched_roles(demo: Demo, run_id: str) -> tuple[str, ...]:
    """The roles the run launched, in the order of the watch tasks' map indexes."""
    backend = LocalBackend(run_root=str(demo.run_root)).connect()
    handles = backend.handles(run_scope(DAG_ID, run_id, GROUP_ID))
    return handles[-1].roles if handles else ()


def task_states(demo: Demo, run_id: str) -> list[tuple[str, str]]:
    """(task label, state and duration) of every task of the run, in DAG order."""
    roles = launched_roles(demo, run_id)
    with sqlite3.connect(demo.db) as db:
        rows = db.execute(
            "SELECT task_id, map_index, rendered_map_index, state, start_date, end_date, "
            "try_number FROM task_instance WHERE dag_id=? AND run_id=?",
            (DAG_ID, run_id),
        ).fetchall()

    def order(row: tuple[Any, ...]) -> tuple[int, int]:
        short = str(row[0]).rsplit(".", 1)[-1]
        return (TASK_ORDER.index(short) if short in TASK_ORDER else 99, int(row[1]))

    states = []
    for task_id, map_index, rendered, state, start, end, tries in sorted(rows, key=order):
        if map_index >= 0:
            role = rendered or (roles[map_index] if map_index < len(roles) else map_index)
            task_id = f"{task_id}[{role}]"
        detail = state or "none"
        if start and end:
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            detail += f" ({seconds:.1f} s)"
        if tries and tries > 1:
            detail += f", {tries} tries"
        states.append((task_id, detail))
    return states


def print_model(demo: Demo, run_id: str) -> Deployment | None:
    """Print the final eval, the gate's decision and the deployment; the version served."""
    storage = LocalStorage()
    model_dir = run_model_dir(str(demo.base / "models"), DAG_ID, run_id)
    blessing = read_blessing(storage, model_dir)
    if blessing is None:
        print(f"Gate: no decision in {demo.show(model_dir)} (the gate did not run)")
        return None
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(blessing.metrics.items()))
    print(f"Final eval at step {blessing.global_step}: {metrics}")
    baseline = blessing.baseline
    against = f"version {baseline.version}" if baseline else "no deployed version"
    print(f"Gate: {'BLESSED' if blessing.blessed else 'NOT BLESSED'}, against {against}")
    if baseline:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(baseline.metrics.items()))
        print(f"  version {baseline.version}: {shown}")
    for reason in blessing.reasons:
        print(f"  reason: {reason}")
    for note in blessing.notes:
        print(f"  note: {note}")
    deployed = latest_deployment(storage, str(demo.base / "serving"), MODEL_NAME)
    if deployed is not None and deployed.run_id == run_id:
        print(f"Deployed: {MODEL_NAME} version {deployed.version} at {demo.show(deployed.path)}")
    else:
        why = "the model is not blessed" if not blessing.blessed else "see the deploy task's log"
        print(f"Deploy skipped: {why}")
        if deployed is not None:
            print(f"  still serving version {deployed.version} at {demo.show(deployed.path)}")
    return deployed


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send the process's native stderr (TensorFlow's C++ logging) to `path` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("a") as target:
            os.dup2(target.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def predict(deployed: Deployment, log_path: Path) -> None:
    """Predict scikit-learn's digits with the deployed SavedModel's `serving_default`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0).astype("float32")
    with stderr_to(log_path):
        import tensorflow as tf

        signature = tf.saved_model.load(deployed.path).signatures["serving_default"]
        (input_name,) = signature.structured_input_signature[1]
        (outputs,) = signature(**{input_name: tf.constant(images)}).values()
        predicted = tf.argmax(outputs, axis=1).numpy()
    first = slice(0, PREDICTED_EXAMPLES)
    print(f"Version {deployed.version} on the first {PREDICTED_EXAMPLES} of scikit-learn's digits:")
    print(f"  predicted {' '.join(str(d) for d in predicted[first])}")
    print(f"  true      {' '.join(str(d) for d in digits.target[first])}")
    correct = (predicted == digits.target).mean()
    print(f"  all {len(predicted)} digits: {correct:.1%} correct")


def leftovers(demo: Demo) -> list[psutil.Process]:
    """Role supervisors and role processes of this demo that are still running."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if not any(module in cmdline for module in ROLE_MODULES):
            continue
        try:
            model_dir = process.environ().get("MODEL_DIR", "")
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            model_dir = ""
        if str(demo.base) in f"{cmdline} {model_dir}":
            found.append(process)
    return found


def check_nothing_left(demo: Demo) -> bool:
    """Print whether any role process is left; stop those that are."""
    left = leftovers(demo)
    if not left:
        print(f"No role process left running under {demo.show(demo.base)}.")
        return True
    print(f"LEFT RUNNING: {len(left)} role process(es); stopping them:")
    for process in left:
        print(f"  pid {process.pid}: {' '.join(process.info['cmdline'])[:160]}")
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(left, timeout=15)
    for process in alive:
        process.kill()
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python dags/demo.py", description=__doc__)
    parser.add_argument("--root", default="var", help="where everything goes (default: var)")
    parser.add_argument("--max-steps", type=int, help="training steps (the DAG's default: 400)")
    parser.add_argument("--conf", type=json.loads, default={}, help="more DAG run conf (JSON)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds the DAG run may take (default: 600)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conf = dict(args.conf)
    if args.max_steps is not None:
        conf["max_steps"] = args.max_steps
    demo = Demo(repo=Path.cwd().absolute(), root=Path(args.root).absolute())
    print(f"tfdist demo: Airflow home {demo.show(demo.home)}, tfdist files {demo.show(demo.base)}")
    if not migrate(demo):
        return 1
    log_path = demo.root / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    before = latest_run(demo)
    code = run_dag(demo, conf, log_path, args.timeout)
    run = latest_run(demo)
    if run is None or (before is not None and run[0] == before[0]):
        print(f"\nairflow dags test failed before starting a run (exit code {code}):")
        print("\n".join(log_path.read_text().splitlines()[-15:]))
        print(f"Full log: {demo.show(log_path)}")
        check_nothing_left(demo)
        return 1
    _, run_id, run_state = run
    print(f"\nRun {run_id}: {run_state}")
    states = task_states(demo, run_id)
    width = max((len(label) for label, _ in states), default=0)
    for label, detail in states:
        print(f"  {label:<{width}}  {detail}")
    ok = run_state == "success" and code == 0
    if ok:
        deployed = print_model(demo, run_id)
        if deployed is not None:
            predict(deployed, log_path)
    else:
        failed = [label for label, detail in states if detail.startswith(FAILED_STATES)]
        print(f"FAILED: run state {run_state}, airflow dags test exit code {code}")
        print(f"  failed tasks: {', '.join(failed) or 'none'}")
        role_logs = demo.run_root / run_scope(DAG_ID, run_id, GROUP_ID)
        if role_logs.exists():
            print(f"  role logs under {demo.show(role_logs)}")
    print(f"Full log: {demo.show(log_path)}")
    return 0 if check_nothing_left(demo) and ok else 1


if __name__ == "__main__":
    sys.exit(main())
