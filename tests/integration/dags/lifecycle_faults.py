"""One table of role faults, run both by `tfdist run` and by Airflow (`test_lifecycle_cases.py`).

Each case is a parameter-server job (chief, 2 workers, ps, evaluator) whose roles run
`ROLE_PROGRAM` (no TensorFlow, so a case takes seconds): a role named in the case fails on its
first try as the case says (`exit-3`: the program's own error; `kill`: SIGKILL of its own
process, as the OOM killer or `kill -9` would), and succeeds when started again;
`kill-always` kills it on every try, `kill-after-chief` once the supervisor has seen the
chief succeed (its record in the launch's run directory says so; a role killed while the chief
still runs is restarted). The chief ends after a few seconds; the others end once it did.
Every try is counted in `<model_dir>/<role>.tries`. One DAG per case: `tfdist_fault_<case>`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import DAG

from tfdist.spec import parse_spec
from tfdist_airflow import train_and_evaluate

BASE_DIR = os.environ.get("TFDIST_BASE_DIR", "/tmp/tfdist")
CLUSTER = {"worker": 2, "ps": 1, "evaluator": 1}
RESTART_POLICY = {"max_role_restarts": 2, "max_job_restarts": 1}
ROLE_PROGRAM = """
import json, os, pathlib, signal, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
me = f"{task['type']}-{task['index']}"
state = pathlib.Path(os.environ["MODEL_DIR"])
state.mkdir(parents=True, exist_ok=True)
tries = state / f"{me}.tries"
attempt = int(tries.read_text()) + 1 if tries.exists() else 1
part = tries.with_suffix(".part")  # whole or absent: the test reads it meanwhile
part.write_text(str(attempt))
part.replace(tries)
print(me, "try", attempt, flush=True)
fault = json.loads(os.environ["FAULTS"]).get(me)
def chief_seen_succeeded():
    launch = os.environ["TFDIST_LAUNCH_ID"]
    for record in pathlib.Path(os.environ["TFDIST_RUN_ROOT"]).rglob(f"*-{launch}/supervision.json"):
        return json.loads(record.read_text()).get("chief_done_at") is not None
    return False
if fault == "kill-after-chief":
    while not chief_seen_succeeded():
        time.sleep(0.2)
    print(me, "fails on purpose:", fault, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if fault == "kill-always" or (fault and attempt == 1):
    time.sleep(1)
    print(me, "fails on purpose:", fault, flush=True)
    if fault.startswith("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(3)
if me == "chief-0":
    time.sleep(6)
    (state / "chief.done").write_text("")
    print("chief-0 done", flush=True)
    sys.exit(0)
while not (state / "chief.done").exists():
    time.sleep(0.2)
"""


@dataclass(frozen=True)
class Case:
    name: str
    faults: dict[str, str]  # role -> "exit-3" | "kill", on its first try
    succeeds: bool
    tries: dict[str, int] = field(default_factory=dict)  # roles started more than once
    failed_role: str | None = None
    says: tuple[str, ...] = ()  # what the runner's failure message contains


CASES = [
    Case(
        name="chief_exits_3",
        faults={"chief-0": "exit-3"},
        succeeds=False,
        failed_role="chief-0",
        says=(
            "chief-0 failed with exit code 3: a failure of the program itself",
            "chief-0 fails on purpose: exit-3",
        ),
    ),
    Case(
        name="ps_worker_and_evaluator_killed",
        faults={"worker-1": "kill", "evaluator-0": "kill"},
        succeeds=True,
        tries={"worker-1": 2, "evaluator-0": 2},
    ),
    Case(
        name="chief_killed",
        faults={"chief-0": "kill"},
        succeeds=True,
        tries=dict.fromkeys(["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"], 2),
    ),
    Case(
        name="evaluator_crash_loops",
        faults={"evaluator-0": "kill-always"},
        succeeds=False,
        tries={"evaluator-0": 1 + RESTART_POLICY["max_role_restarts"]},
        failed_role="evaluator-0",
        says=(
            "evaluator-0 ended: killed by SIGKILL (exit code 137); all 2 restarts used "
            "(restart_policy.max_role_restarts: 2)",
        ),
    ),
    Case(
        name="worker_killed_after_the_chief_succeeded",
        faults={"worker-1": "kill-after-chief"},
        succeeds=True,
    ),
]


def spec(case: Case, model_dir: str) -> dict[str, Any]:
    return {
        "name": case.name.replace("_", "-"),
        "trainer": {
            "command": ["python", "-c", ROLE_PROGRAM],
            "env": {"FAULTS": json.dumps(case.faults, sort_keys=True)},
        },
        "cluster": CLUSTER,
        "restart_policy": RESTART_POLICY,
        "train_spec": {"max_steps": 1},
        "model_dir": model_dir,
    }


for case in CASES:
    with DAG(dag_id=f"tfdist_fault_{case.name}", schedule=None, catchup=False, tags=["test"]):
        train_and_evaluate(parse_spec(spec(case, f"{BASE_DIR}/models")), poll_interval=0.5)
