"""The orchestration baseline: start a job's role processes the way a shell script would.

No tfdist launcher, planner or supervisor: read the YAML, pick free ports, write each role's
`TF_CONFIG` by hand, `Popen` one `python -m tfdist.runtime` per role (its output to
`<log-dir>/<role>.log`), wait for all of them. Parameter servers and workers exit by
themselves once the chief is done, as under `tfdist run`.

Each role gets its own session (`setsid`), as tfdist's supervisors give theirs: with Linux's
scheduler autogroups, CPU time is shared fairly between sessions, so on a busy machine roles
that share one session would get less of it and the comparison would measure that instead.

    python bench/plain_launch.py SPEC.yaml --log-dir DIR [--set field.path=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plain_launch.py", description=__doc__)
    parser.add_argument("spec")
    parser.add_argument("--log-dir", required=True, type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)

    job = yaml.safe_load(Path(args.spec).read_text())
    for pair in args.set:
        path, value = pair.split("=", 1)
        *parents, leaf = path.split(".")
        target = job
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    counts = job["cluster"]
    cluster = {
        kind: [f"127.0.0.1:{free_port()}" for _ in range(counts.get(kind, 0))]
        for kind in ("chief", "worker", "ps")
        if counts.get(kind, 0)
    }
    roles = [(kind, i) for kind in ("chief", "worker", "ps") for i in range(counts.get(kind, 0))]
    roles += [("evaluator", i) for i in range(counts.get("evaluator", 0))]

    args.log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    for kind, index in roles:
        tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TFDIST_JOB": json.dumps(job),
            "MODEL_DIR": job["model_dir"],
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        with (args.log_dir / f"{kind}-{index}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tfdist.runtime"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
    codes = [process.wait() for process in processes]
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main())
